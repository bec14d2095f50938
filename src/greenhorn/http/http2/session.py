"""One HTTP/2 connection, server side, without IO: h2's state machine plus the server's
rules (``request``, ``response``, ``guard``) and each stream's request body.

Why a class of its own: the three ways a worker serves a connection (a thread per stream,
a greenlet per stream, an asyncio task per stream) differ only in how they wait; what a
frame means is decided here, once. The worker feeds received bytes to ``receive`` (with
the time), sends what ``output`` returns, and calls the stream methods from whichever
thread serves the stream, under its own lock: the session itself is not thread-safe.

Flow control, both ways:

- **Request bodies** are held per stream (``Stream.chunks``) until the application reads
  them (``read``). The stream's window is credited only as it reads, so a client can never
  have more than ``http2_initial_window_size`` bytes of one stream waiting in memory, and
  an application that does not read stops its client instead of growing the heap. The
  connection's window is credited as DATA arrives, so one stalled stream never blocks the
  others (at most ``http2_max_concurrent_streams`` times the stream window per connection).
- **Responses** are sent only as far as the peer's windows allow (``send_data`` says how
  much went); the worker waits for ``Stream.wake`` (a WINDOW_UPDATE) to send more.

Wire rules this class adds to h2's: Content-Length against the DATA received (more, or
less at END_STREAM, is malformed: RST_STREAM PROTOCOL_ERROR, the application reads an
error); a request over ``max_body`` (limit_request_body) gets 413; more streams open at
once than advertised are refused (REFUSED_STREAM) even before the client has our SETTINGS;
a stream the client opens and resets in the same read is never started (rapid reset); a
stream opened after our GOAWAY is refused.

GOAWAY: ``goaway()`` sends a graceful one with the last stream id the server will serve
(TERM, HUP, max_requests): streams up to it finish, later ones are refused, and ``done``
turns True once none is left. A graceful GOAWAY from the peer does the same from its side;
any other ends the connection at once.
"""

from __future__ import annotations

import base64
import binascii
import collections
from collections.abc import Callable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from greenhorn.http import errors
from greenhorn.http.http2.guard import Calm, FrameGuard
from greenhorn.http.http2.hpack_in import CachingDecoder
from greenhorn.http.http2.hpack_out import ResponseEncoder
from greenhorn.http.http2.machine import Connection
from greenhorn.http.http2.request import Malformed, build_request, check_trailers
from greenhorn.http.limits import Limits
from greenhorn.http.parser import Request

__all__ = [
    "CANCEL",
    "ENHANCE_YOUR_CALM",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "BodyTooLarge",
    "H2Config",
    "Session",
    "Stream",
    "StreamGone",
]

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
UNLIMITED_HEADER_LIST = 1 << 20  # what http2_max_header_list_size = 0 still allows

_RequestReceived = h2.events.RequestReceived
_DataReceived = h2.events.DataReceived
_StreamEnded = h2.events.StreamEnded
_StreamReset = h2.events.StreamReset
_WindowUpdated = h2.events.WindowUpdated
_TrailersReceived = h2.events.TrailersReceived
_RemoteSettingsChanged = h2.events.RemoteSettingsChanged
_ConnectionTerminated = h2.events.ConnectionTerminated
_SettingCodes = h2.settings.SettingCodes


@dataclass(frozen=True, slots=True)
class H2Config:
    """The HTTP/2 settings of a worker (gunicorn's names) and the HTTP/1.1 limits."""

    limits: Limits
    max_concurrent_streams: int = 100
    initial_window_size: int = 65535
    max_frame_size: int = 16384
    max_header_list_size: int = 65536
    max_body: int = 0  # limit_request_body; 0: no limit


class BodyTooLarge(errors.HTTPError):
    """The request body is over ``limit_request_body``."""

    code = 413
    reason = "Content Too Large"


class StreamGone(Exception):
    """The stream was reset (by the peer, or by the server after a stall or an error) or
    the connection is closing: nothing more can be sent or read on it."""


class Stream:
    """One stream: its request, the body received and not yet read, its response state.

    ``wake`` is set by the worker: the session calls it when something the stream's
    server may wait for happens (body data, the body's end, a reset, a window update)."""

    __slots__ = (
        "body_error",
        "buffered",
        "chunks",
        "ended",
        "expected",
        "final_sent",
        "head_sent",
        "received",
        "req",
        "reset",
        "scheme",
        "sid",
        "trailers",
        "unacked",
        "wake",
    )

    def __init__(self, sid: int, req: Request, scheme: bytes, ended: bool) -> None:
        self.sid = sid
        self.req = req
        self.scheme = scheme.decode("latin-1")  # the :scheme the client claimed
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0  # body bytes in chunks
        self.ended = ended  # the client's END_STREAM arrived
        self.received = 0  # body bytes received in all
        self.expected = req.content_length  # the declared Content-Length, if any
        self.unacked = 0  # body bytes read but not yet credited to the peer
        self.reset: int | None = None  # the error code once the stream was reset
        self.body_error: errors.HTTPError | None = None  # what reading the body raises
        self.trailers: list[tuple[str, str]] = []
        self.head_sent = False  # the final response HEADERS went out
        self.final_sent = False  # END_STREAM went out
        self.wake: Callable[[], None] | None = None

    @property
    def gone(self) -> bool:
        return self.reset is not None

    def __repr__(self) -> str:
        return f"<Stream {self.sid} {self.req.method} {self.req.uri}>"


class Session:
    """One connection's protocol state. See the module docstring."""

    def __init__(self, config: H2Config, *, preface: bool = True) -> None:
        self.config = config
        h2_config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            split_outbound_cookies=False,
        )
        conn = Connection(h2_config)
        header_list = config.max_header_list_size
        initial = {
            _SettingCodes.MAX_CONCURRENT_STREAMS: config.max_concurrent_streams,
            _SettingCodes.INITIAL_WINDOW_SIZE: config.initial_window_size,
            _SettingCodes.MAX_FRAME_SIZE: config.max_frame_size,
        }
        if header_list:
            initial[_SettingCodes.MAX_HEADER_LIST_SIZE] = header_list
        conn.local_settings = h2.settings.Settings(client=False, initial_values=initial)
        conn.max_inbound_frame_size = config.max_frame_size
        conn.decoder = CachingDecoder(header_list or UNLIMITED_HEADER_LIST)
        conn.encoder = ResponseEncoder()  # type: ignore[assignment]  # h2 asks encode() only
        self.h2 = conn
        self.guard = FrameGuard(header_list or UNLIMITED_HEADER_LIST, preface=preface)
        self.streams: dict[int, Stream] = {}
        self.window_waiters: set[Stream] = set()  # streams waiting for send credit
        self._out: list[bytes] = []  # bytes queued ahead of h2's own
        self._conn_unacked = 0  # connection-level body bytes not yet credited
        self._conn_credit_at = 32768  # credit the connection window in steps this big
        self._stream_credit_at = max(1, config.initial_window_size // 2)
        self.goaway_at: int | None = None  # the last stream id our graceful GOAWAY named
        self.peer_going = False  # the peer sent a graceful GOAWAY
        self.closed = False  # the connection is over: send what is queued, then close
        self.reason = ""  # why it closed (for the log)
        self.served = 0  # streams started
        self._now = 0.0  # the time receive() was given

    # -- the connection ---------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the server's connection preface (its SETTINGS frame)."""
        self.h2.initiate_connection()

    def upgrade(self, settings: bytes, req: Request) -> Stream:
        """Begin as an HTTP/1.1 ``Upgrade: h2c`` does (RFC 7540 §3.2): queue the preface,
        apply the client's ``HTTP2-Settings`` (base64url, ``ValueError`` when it is not
        valid), and return stream 1: ``req``, its body complete, to be answered in HTTP/2."""
        try:
            payload = base64.urlsafe_b64decode(settings + b"=" * (-len(settings) % 4))
            if len(payload) % 6:
                raise ValueError("HTTP2-Settings is not a SETTINGS payload")
            self.h2.initiate_upgrade_connection(base64.urlsafe_b64encode(payload))
        except (binascii.Error, h2.exceptions.ProtocolError) as exc:
            raise ValueError(f"invalid HTTP2-Settings: {exc}") from None
        req.version = (2, 0)
        stream = Stream(1, req, b"http", True)
        self.streams[1] = stream
        self.served += 1
        return stream

    def output(self) -> bytes:
        """Bytes to send now (may be empty)."""
        data = self.h2.data_to_send()
        if self._out:
            self._out.append(data)
            data = b"".join(self._out)
            self._out.clear()
        return data

    @property
    def done(self) -> bool:
        """Nothing more will happen on this connection: close it once output is sent."""
        return self.closed or ((self.goaway_at is not None or self.peer_going) and not self.streams)

    def receive(self, data: bytes, now: float) -> list[Stream]:
        """Take bytes from the peer (``b""``: it closed); return the streams to start, in
        order. Wakes the streams the bytes concern. On a connection error the session is
        ``closed`` (a GOAWAY queued) and every stream woken."""
        if self.closed:
            return []
        if not data:
            self._close("the client closed the connection")
            return []
        self._now = now
        try:
            data = self.guard.scan(data, now)
            events = self.h2.receive_data(data) if data else []
        except Calm as exc:
            self._calm(str(exc))
            return []
        except h2.exceptions.ProtocolError as exc:
            self._close(f"protocol error: {exc}")  # h2 queued its GOAWAY
            return []
        except (ValueError, UnicodeDecodeError) as exc:  # a frame h2 could not take
            self._fail(PROTOCOL_ERROR, f"protocol error: {exc}")
            return []
        opened: list[Stream] = []
        for event in events:
            kind = event.__class__
            if kind is _RequestReceived:
                stream = self._opened(event)  # type: ignore[arg-type]
                if stream is not None:
                    opened.append(stream)
            elif kind is _DataReceived:
                self._data(event)  # type: ignore[arg-type]
            elif kind is _StreamEnded:
                self._ended(event.stream_id)  # type: ignore[attr-defined]
            elif kind is _StreamReset:
                self._peer_reset(event)  # type: ignore[arg-type]
            elif kind is _WindowUpdated or kind is _RemoteSettingsChanged:
                self._window_opened(getattr(event, "stream_id", 0))
            elif kind is _TrailersReceived:
                self._trailers(event)  # type: ignore[arg-type]
            elif kind is _ConnectionTerminated:
                self._close("the client ended the connection")
        if self.guard.goaway:
            for _last, code in self.guard.goaway:
                self._peer_goaway(code)
            self.guard.goaway.clear()
        if opened:
            opened = [s for s in opened if s.reset is None]
            self.served += len(opened)
        return opened

    def goaway(self) -> int:
        """Say GOAWAY (NO_ERROR): the streams opened so far finish, later ones are refused.
        Returns the last stream id named. Idempotent."""
        if self.goaway_at is None and not self.closed:
            last = self.h2.highest_inbound_stream_id
            self.goaway_at = last
            frame = GoAwayFrame(0)
            frame.last_stream_id = last
            frame.error_code = NO_ERROR
            self._out.append(self.h2.data_to_send())
            self._out.append(frame.serialize())
        return self.goaway_at or 0

    def abort(self, code: int, reason: str) -> None:
        """End the connection now with a GOAWAY carrying ``code`` (INTERNAL_ERROR when the
        server is going away unfinished)."""
        self._fail(code, reason)

    def _calm(self, reason: str) -> None:
        self._fail(ENHANCE_YOUR_CALM, reason)

    def _fail(self, code: int, reason: str) -> None:
        if self.closed:
            return
        try:
            self.h2.close_connection(error_code=code)
        except h2.exceptions.ProtocolError:  # already closed from h2's side
            pass
        self._close(reason)

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        for stream in list(self.streams.values()):
            if stream.reset is None:
                stream.reset = CANCEL
            if stream.wake is not None:
                stream.wake()

    def _peer_goaway(self, code: int) -> None:
        if code != NO_ERROR:
            self._close(f"the client sent GOAWAY (error {code:#x})")
        else:
            self.peer_going = True

    # -- streams arriving -------------------------------------------------------------------

    def _open_streams(self) -> int:
        """Streams that count toward SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §5.1.2: open
        or half-closed). A stream both sides ended, or one reset, is closed for the client
        the moment our END_STREAM reaches it, although its worker may not have called
        ``finish`` yet: counting ``self.streams`` would refuse the client's next stream."""
        return sum(
            1 for s in self.streams.values() if s.reset is None and not (s.final_sent and s.ended)
        )

    def _opened(self, event: h2.events.RequestReceived) -> Stream | None:
        sid = event.stream_id
        assert sid is not None
        if self.closed:  # a flood ended the connection earlier in this read
            return None
        ended = event.stream_ended is not None
        if (self.goaway_at is not None and sid > self.goaway_at) or self.peer_going:
            self._reset(sid, REFUSED_STREAM)
            return None
        limit = self.config.max_concurrent_streams
        if len(self.streams) >= limit and self._open_streams() >= limit:  # (no walk below it)
            self._reset(sid, REFUSED_STREAM)  # RFC 9113 §5.1.2: a stream error
            if not self.guard.refused(self._now):  # opening and opening: rapid reset's twin
                self._calm("flood of streams past SETTINGS_MAX_CONCURRENT_STREAMS")
            return None
        try:
            req, scheme = build_request(event.headers or (), self.config.limits)
        except errors.HTTPError as exc:
            req = Request("-", "-", "", "", "", (2, 0), [])
            stream = Stream(sid, req, b"", ended)
            stream.body_error = exc
            stream.ended = True
            if isinstance(exc, Malformed):
                self._reset(sid, PROTOCOL_ERROR)
                stream.reset = PROTOCOL_ERROR
                return None
            self.streams[sid] = stream  # answered with exc's status by the worker
            return stream
        stream = Stream(sid, req, scheme, ended)
        max_body = self.config.max_body
        if max_body and stream.expected is not None and stream.expected > max_body:
            stream.body_error = BodyTooLarge(f"Content-Length over {max_body} bytes")
        elif ended and stream.expected:
            self._reset(sid, PROTOCOL_ERROR)  # a length announced, no DATA to come
            return None
        self.streams[sid] = stream
        return stream

    def _data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        data = event.data or b""
        flow = event.flow_controlled_length or 0
        conn = self.h2
        self._conn_unacked += flow
        if self._conn_unacked >= self._conn_credit_at:
            conn.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0
        stream = self.streams.get(sid) if sid is not None else None
        if stream is None or stream.reset is not None:
            return  # a stream we refused or finished: only the connection window counts
        padding = flow - len(data)
        if padding > 0 and event.stream_ended is None:
            self._credit(sid, padding)
        if not data:
            return
        received = stream.received + len(data)
        stream.received = received
        if stream.expected is not None and received > stream.expected:
            self._malformed(stream, "more DATA than Content-Length")
            return
        max_body = self.config.max_body
        if max_body and received > max_body:
            self._refuse_body(stream, max_body)
            return
        stream.chunks.append(data)
        stream.buffered += len(data)
        if stream.wake is not None:
            stream.wake()

    def _ended(self, sid: int | None) -> None:
        stream = self.streams.get(sid) if sid is not None else None
        if stream is None or stream.reset is not None:
            return
        if stream.expected is not None and stream.received != stream.expected:
            self._malformed(stream, "less DATA than Content-Length")
            return
        stream.ended = True
        if stream.wake is not None:
            stream.wake()

    def _trailers(self, event: h2.events.TrailersReceived) -> None:
        sid = event.stream_id
        stream = self.streams.get(sid) if sid is not None else None
        if stream is None or stream.reset is not None:
            return
        try:
            stream.trailers = check_trailers(event.headers or (), self.config.limits)
        except errors.HTTPError as exc:
            self._malformed(stream, str(exc))

    def _peer_reset(self, event: h2.events.StreamReset) -> None:
        sid = event.stream_id
        stream = self.streams.pop(sid, None) if sid is not None else None
        if stream is None:
            return
        self.window_waiters.discard(stream)
        stream.reset = int(event.error_code or 0)
        if stream.wake is not None:
            stream.wake()

    def _window_opened(self, sid: int | None) -> None:
        waiters = self.window_waiters
        if not waiters:
            return
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and stream in waiters:
                waiters.discard(stream)
                if stream.wake is not None:
                    stream.wake()
            return
        self.window_waiters = set()
        for stream in waiters:
            if stream.wake is not None:
                stream.wake()

    def _malformed(self, stream: Stream, why: str) -> None:
        stream.body_error = Malformed(why)
        self.reset(stream, PROTOCOL_ERROR)

    def _refuse_body(self, stream: Stream, limit: int) -> None:
        stream.body_error = BodyTooLarge(f"request body over {limit} bytes")
        stream.chunks.clear()
        stream.buffered = 0
        if stream.head_sent:
            self.reset(stream, CANCEL)
        elif stream.wake is not None:
            stream.wake()

    # -- a stream's request body -------------------------------------------------------------

    def read(self, stream: Stream, size: int = -1) -> bytes | None:
        """Up to ``size`` (-1: all buffered) body bytes; ``b""`` at the end; None when none
        has arrived yet (wait for ``wake``). Credits the stream's window as it reads.
        Raises the body's error (``errors.HTTPError``) or ``StreamGone``."""
        if stream.body_error is not None:
            raise stream.body_error
        chunks = stream.chunks
        if not chunks:
            if stream.reset is not None:
                raise StreamGone(f"stream {stream.sid} reset")
            if stream.ended:
                return b""
            if not stream.unacked and self.config.initial_window_size < 16384:
                # a window too small for the client to send anything useful: ask for more
                stream.unacked = -16384
                self._credit(stream.sid, 16384)
            return None
        if size < 0 or size >= stream.buffered:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            data = chunks.popleft()
            if len(data) > size:
                chunks.appendleft(data[size:])
                data = data[:size]
        n = len(data)
        stream.buffered -= n
        if not stream.ended:
            unacked = stream.unacked + n
            if unacked >= self._stream_credit_at or (not stream.buffered and unacked > 0):
                self._credit(stream.sid, unacked)
                unacked = 0
            stream.unacked = unacked
        return data

    def _credit(self, sid: int, n: int) -> None:
        try:
            self.h2.increment_flow_control_window(n, stream_id=sid)
        except (KeyError, ValueError, h2.exceptions.ProtocolError):
            pass  # the stream is closed on the client's side already

    # -- a stream's response ----------------------------------------------------------------

    def send_headers(self, stream: Stream, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        """The final response head (``fields`` from ``response.prepare``); ``end``: no body."""
        self._check(stream)
        try:
            self.h2.send_headers(stream.sid, fields, end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            self._lost(stream)
            raise StreamGone(str(exc)) from None
        stream.head_sent = True
        if end:
            stream.final_sent = True

    def send_informational(self, stream: Stream, fields: list[tuple[bytes, bytes]]) -> None:
        """A 1xx interim head (100 Continue, 103 Early Hints) before the final one."""
        self._check(stream)
        if stream.head_sent:
            return
        try:
            self.h2.send_headers(stream.sid, fields, end_stream=False)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            self._lost(stream)
            raise StreamGone(str(exc)) from None

    def window(self, stream: Stream) -> int:
        """How many body bytes may be sent on ``stream`` now (0: wait for ``wake``)."""
        self._check(stream)
        try:
            return self.h2.local_flow_control_window(stream.sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            self._lost(stream)
            raise StreamGone(f"stream {stream.sid} closed") from None

    def send_data(self, stream: Stream, data: bytes | memoryview, end: bool) -> int:
        """Send as much of ``data`` as the windows allow; return how much went. With
        ``end``, the stream ends once all of it went (an empty ``data`` ends it at once).
        When less went, the stream is registered for ``wake`` on the next window update."""
        self._check(stream)
        conn = self.h2
        sid = stream.sid
        total = len(data)
        sent = 0
        try:
            if not total:
                if end:
                    conn.send_data(sid, b"", end_stream=True)
                    stream.final_sent = True
                return 0
            window = conn.local_flow_control_window(sid)
            frame = conn.max_outbound_frame_size
            while sent < total and window > 0:
                n = min(total - sent, window, frame)
                last = end and sent + n == total
                piece = data if n == total else data[sent : sent + n]
                conn.send_data(sid, piece, end_stream=last)
                sent += n
                window -= n
            if sent == total:
                if end:
                    stream.final_sent = True
            else:
                self.window_waiters.add(stream)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            self._lost(stream)
            raise StreamGone(str(exc)) from None
        return sent

    def send_trailers(self, stream: Stream, fields: list[tuple[bytes, bytes]]) -> None:
        """Trailer fields, ending the stream (after the body)."""
        self._check(stream)
        try:
            self.h2.send_headers(stream.sid, fields, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError) as exc:
            self._lost(stream)
            raise StreamGone(str(exc)) from None
        stream.final_sent = True

    def reset(self, stream: Stream, code: int) -> None:
        """RST_STREAM ``stream`` (a stall, an error, a response cut short)."""
        if stream.reset is None:
            stream.reset = code
            self._reset(stream.sid, code)
        self.window_waiters.discard(stream)
        if stream.wake is not None:
            stream.wake()

    def finish(self, stream: Stream) -> None:
        """The server is done with ``stream``: forget it. A response that did not end is
        cut off (INTERNAL_ERROR); a request body the application did not read to its end
        is refused from here on (NO_ERROR: the response is complete, RFC 9113 §8.1)."""
        self.streams.pop(stream.sid, None)
        self.window_waiters.discard(stream)
        if stream.reset is None and not self.closed:
            if not stream.final_sent:
                self._reset(stream.sid, INTERNAL_ERROR)
                stream.reset = INTERNAL_ERROR
            elif not stream.ended:
                self._reset(stream.sid, NO_ERROR)
                stream.reset = NO_ERROR
        stream.chunks.clear()
        stream.buffered = 0

    def _check(self, stream: Stream) -> None:
        if stream.reset is not None or self.closed:
            raise StreamGone(f"stream {stream.sid} is gone")

    def _lost(self, stream: Stream) -> None:
        if stream.reset is None:
            stream.reset = CANCEL
        self.window_waiters.discard(stream)

    def _reset(self, sid: int, code: int) -> None:
        try:
            self.h2.reset_stream(sid, error_code=code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            pass
