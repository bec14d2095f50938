"""The response to one HTTP/2 stream: PEP 3333's ``start_response`` and ``write``, framed as
HEADERS and DATA frames.

Why a module of its own, next to ``response.py``: the WSGI side is the same (``start_response``
twice without ``exc_info`` is an error, a bad status or header is never sent, the
application's Content-Length is respected, HEAD, 1xx, 204 and 304 carry no body, 103 Early
Hints before the head), but the framing is HTTP/2's: the head is a header list, the body
DATA frames that wait for the client's flow-control window, the end an END_STREAM flag or
the trailers. It writes through a ``StreamSender`` (the worker's stream), so it knows
nothing of locks or sockets. Hooks and the access log read the same attributes as from an
HTTP/1.1 response: ``status``, ``status_code``, ``headers``, ``sent``.

Trailers: an application sets them with ``environ['gunicorn.http2.send_trailers'](headers)``
(gunicorn's name, also ``greenhorn.http2.send_trailers``) before its body ends; they go out
after the body, ending the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from greenhorn.http.http2.response import (
    Fields,
    informational,
    prepare,
    prepare_int,
    trailer_fields,
)
from greenhorn.http.response import Framing
from greenhorn.wsgi.response import SERVER, Started

if TYPE_CHECKING:
    from greenhorn.config import HookResponse

__all__ = ["H2Response", "StreamSender"]

INTERNAL_ERROR = 0x2  # RST_STREAM code for a response cut short
_CONTINUE = [(b":status", b"100")]
_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


class StreamSender(Protocol):
    """How a response reaches the client (``workers.http2.connection.StreamIO``)."""

    def head(self, fields: Fields, body: bytes, end: bool) -> None: ...

    def body(self, data: bytes, end: bool) -> None: ...

    def trailers(self, fields: Fields) -> None: ...

    def informational(self, fields: Fields) -> None: ...

    def reset(self, code: int) -> None: ...


class H2Response(Started):
    """The response being sent on one stream (hooks and the access log read it);
    ``start_response`` is ``Started``'s, as for HTTP/1.1."""

    __slots__ = (
        "_io",
        "_method",
        "awaiting_trailers",
        "ended",
        "framing",
        "headers",
        "sent",
        "status_code",
        "trailers",
    )

    def __init__(self, io: StreamSender, method: str) -> None:
        self._io = io
        self._method = method
        self.status: str | None = None
        self.status_code = 0
        self.app_headers: list[tuple[str, str]] = []
        self.headers: list[tuple[str, str]] = []
        self.sent = 0
        self.head_sent = False
        self.ended = False  # END_STREAM went out (or the stream was reset)
        self.framing: Framing | None = None
        self.trailers: list[tuple[str, str]] | None = None
        # announced and still to come (ASGI's ``trailers``): the owner calls finish()
        self.awaiting_trailers = False

    def send_head(self, first: bytes, known_length: int | None, end: bool) -> None:
        """Validate and send the head with ``first`` body bytes; ``end``: they are all."""
        status = self.status
        if status is None:
            raise AssertionError("the application did not call start_response()")
        fields, framing, self.headers = prepare(
            status, self.app_headers, self._method, SERVER, known_length
        )
        self.head_sent = True
        self.status_code = framing.code
        self.framing = framing
        length = framing.length
        if not framing.body_allowed:
            first = b""
            end = True
        elif length is not None:
            if len(first) > length:
                first = first[:length]
            if len(first) == length:
                end = True
        end_now = (
            end
            and not self.trailers
            and not self.awaiting_trailers
            and (length is None or len(first) == length)
        )
        self._io.head(fields, first, end_now)
        self.sent = len(first)
        self.ended = end_now
        if end and not end_now and not self.awaiting_trailers:
            self.finish()

    def write(self, data: bytes) -> None:
        """The ``write()`` callable and the per-item body writer."""
        if type(data) is not bytes:
            raise TypeError(f"response body items must be bytes, not {type(data).__name__}")
        if not self.head_sent:
            self.send_head(data, None, False)
            return
        framing = self.framing
        if not data or self.ended or framing is None or not framing.body_allowed:
            return
        end = False
        if framing.length is not None:
            room = framing.length - self.sent
            if room <= 0:
                return
            if len(data) >= room:
                data = data[:room]
                end = not self.trailers and not self.awaiting_trailers
        self._io.body(data, end)
        self.sent += len(data)
        self.ended = end

    def early_hints(self, headers: list[tuple[str, str]]) -> None:
        """``environ['wsgi.early_hints']``: a ``103 Early Hints`` HEADERS frame, before the
        final head (validated like any response header: ``InvalidResponse``)."""
        fields = informational(103, headers)
        if not self.head_sent:
            self._io.informational(fields)

    def send_continue(self) -> None:
        """``100 Continue`` for a client that asked for it (before the final head)."""
        if not self.head_sent:
            self._io.informational(_CONTINUE)

    def set_trailers(self, headers: list[tuple[str, str]]) -> None:
        """``environ['gunicorn.http2.send_trailers']``: trailers to end the stream with."""
        trailer_fields(headers)  # validated now: the application sees its mistake
        self.trailers = list(headers)

    def finish(self) -> None:
        """End the stream: trailers or END_STREAM; a body shorter than its Content-Length
        is cut off with RST_STREAM (the client must not take it for a whole one)."""
        if not self.head_sent:
            self.send_head(b"", 0, True)
            return
        if self.ended:
            return
        framing = self.framing
        self.ended = True
        if (
            framing is not None
            and framing.body_allowed
            and framing.length is not None
            and self.sent < framing.length
        ):
            self._io.reset(INTERNAL_ERROR)
            return
        if self.trailers:
            self._io.trailers(trailer_fields(self.trailers))
        else:
            self._io.body(b"", True)

    def error(self, code: int, reason: str, message: str) -> None:
        """Answer ``code`` with a short text body if the head has not gone out; else cut
        the stream (an error after the head)."""
        if self.head_sent:
            self.cut()
            return
        body = f"{code} {reason}\n{message}\n".encode("latin-1", "replace")
        fields, _, self.headers = prepare_int(code, _TEXT, "GET", SERVER, len(body))
        self.status = f"{code} {reason}"
        self.status_code = code
        self.head_sent = self.ended = True
        self._io.head(fields, body, True)
        self.sent = len(body)

    def cut(self) -> None:
        """The response cannot be completed (an error after the head): reset the stream."""
        if not self.ended:
            self.ended = True
            self._io.reset(INTERNAL_ERROR)


if TYPE_CHECKING:  # post_request hooks are promised a config.HookResponse

    def _hooks_see_a_response(response: H2Response) -> HookResponse:
        return response
