"""The response to one request: PEP 3333's ``start_response`` and ``write``, and the body's
framing on the wire.

Why a module of its own, in wsgi/: ``start_response`` and the iterable's items are the WSGI
side of a response, and so is ``wsgi.early_hints`` (a ``103`` before them). This object
turns them into bytes: the head validated and framed by ``http.response.prepare`` (length,
chunked or close), the body written with that framing,
the last bytes sent with the FIN when the connection closes after them. It writes through
a ``Sender`` (the worker's connection), so it knows nothing of sockets or deadlines beyond
the one it is given. Hooks (``post_request``) and the access log read it afterwards:
``status``, ``status_code``, ``headers``, ``sent``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from greenhorn.http.parser import Request
from greenhorn.http.response import CONTINUE, LAST_CHUNK, Framing, chunk, informational, prepare

if TYPE_CHECKING:
    from greenhorn.config import HookResponse

__all__ = ["Response", "Sender", "Started"]

SERVER = "greenhorn"
# What sys.exc_info() returns, as an application passes it to start_response.
ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
SMALL_WRITE = 65536  # body items below this are framed and sent as one buffer


class Sender(Protocol):
    """How a response reaches the client (``workers.connection.Connection``)."""

    def send(self, data: bytes, deadline: float | None = None) -> int: ...

    def sendv(self, buffers: tuple[bytes, ...], deadline: float | None = None) -> int: ...

    def send_last(self, data: bytes, deadline: float | None = None) -> int: ...

    def sendv_last(self, buffers: tuple[bytes, ...], deadline: float | None = None) -> int: ...


class Started:
    """What PEP 3333's ``start_response`` records, the same for every protocol: the
    application's status and headers, checked against a head already sent. The HTTP/1.1
    ``Response`` and the HTTP/2 ``wsgi.h2response.H2Response`` add the framing; each sets
    these attributes in its own ``__init__`` (no chained call on the hot path)."""

    __slots__ = ("app_headers", "head_sent", "status")

    status: str | None
    app_headers: list[tuple[str, str]]
    head_sent: bool

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        """PEP 3333 ``start_response``."""
        if exc_info:
            try:
                if self.head_sent and exc_info[1] is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if type(headers) is not list:
            raise TypeError("response headers must be a list")
        self.status = status
        self.app_headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The ``write()`` callable ``start_response`` returns (the protocol's)."""
        raise NotImplementedError


class Response(Started):
    """The response being sent for one request (hooks and the access log read it)."""

    __slots__ = (
        "_conn",
        "_deadline",
        "_req",
        "framing",
        "headers",
        "keep_alive",
        "sent",
        "status_code",
    )

    def __init__(
        self, conn: Sender, req: Request, keep_alive: bool, deadline: float | None = None
    ) -> None:
        self._conn = conn
        self._req = req
        self._deadline = deadline  # for sending the response
        self.status: str | None = None
        self.status_code = 0
        self.app_headers: list[tuple[str, str]] = []
        self.headers: list[tuple[str, str]] = []
        self.sent = 0
        self.head_sent = False
        self.keep_alive = keep_alive
        self.framing: Framing | None = None

    @property
    def chunked(self) -> bool:
        """True when the body is sent with chunked framing."""
        framing = self.framing
        return framing is not None and framing.chunked

    @property
    def response_length(self) -> int | None:
        """The Content-Length sent, if any."""
        framing = self.framing
        return None if framing is None else framing.length

    def send_head(self, first: bytes, known_length: int | None) -> None:
        """Validate and send the head, with ``first`` body bytes in the same system call."""
        status = self.status
        if status is None:
            raise AssertionError("the application did not call start_response()")
        req = self._req
        head, framing, self.headers = prepare(
            status, self.app_headers, req.version, req.method, self.keep_alive, SERVER, known_length
        )
        self.head_sent = True
        self.status_code = framing.code
        self.framing = framing
        self.keep_alive = framing.keep_alive
        conn = self._conn
        size = len(first)
        length = framing.length
        if not framing.body_allowed:
            size = 0
        elif length is not None and size > length:
            first = first[:length]
            size = length
            self.keep_alive = False
        # The whole response, and the connection closes after it: the FIN goes with it.
        last = not self.keep_alive and (size == length or not framing.body_allowed)
        if not size:
            (conn.send_last if last else conn.send)(head, self._deadline)
            return
        if framing.chunked:
            conn.sendv((head, b"%x\r\n" % size, first, b"\r\n"), self._deadline)
        elif size < 16384:
            (conn.send_last if last else conn.send)(head + first, self._deadline)
        else:
            (conn.sendv_last if last else conn.sendv)((head, first), self._deadline)
        self.sent = size

    def write(self, data: bytes) -> None:
        """The ``write()`` callable and the per-item body writer."""
        if type(data) is not bytes:
            raise TypeError(f"response body items must be bytes, not {type(data).__name__}")
        if not self.head_sent:
            self.send_head(data, None)
            return
        framing = self.framing
        if not data or framing is None or not framing.body_allowed:
            return
        if framing.length is not None:
            room = framing.length - self.sent
            if room <= 0:
                self.keep_alive = False
                return
            if len(data) > room:
                data = data[:room]
                self.keep_alive = False
        if not framing.chunked:
            last = not self.keep_alive and self.sent + len(data) == framing.length
            (self._conn.send_last if last else self._conn.send)(data, self._deadline)
        elif len(data) < SMALL_WRITE:  # one buffer: cheaper than gathering three
            self._conn.send(chunk(data), self._deadline)
        else:
            self._conn.sendv((b"%x\r\n" % len(data), data, b"\r\n"), self._deadline)
        self.sent += len(data)

    def send_continue(self) -> None:
        """``100 Continue``, the interim answer to ``Expect: 100-continue``: sent only while
        the final head has not gone out (after it, the client has its answer)."""
        if not self.head_sent:
            self._conn.send(CONTINUE)

    def early_hints(self, headers: list[tuple[str, str]]) -> None:
        """``environ['wsgi.early_hints']`` (gunicorn 25+): send ``103 Early Hints`` with
        ``headers`` (pairs of str or bytes, validated like any response header:
        ``InvalidResponse``). Skipped for HTTP/1.0 clients, which know no interim
        responses, and once the final head has gone out."""
        data = informational(103, headers)
        if not self.head_sent and self._req.version >= (1, 1):
            self._conn.send(data, self._deadline)

    def finish(self) -> None:
        """End the body: last chunk, or close when the app sent less than its length."""
        if not self.head_sent:
            self.send_head(b"", 0)
        framing = self.framing
        if framing is None:
            return
        if framing.chunked:  # the last chunk, with the FIN when the connection closes
            (self._conn.send if self.keep_alive else self._conn.send_last)(
                LAST_CHUNK, self._deadline
            )
        elif framing.length is not None and framing.body_allowed and self.sent < framing.length:
            self.keep_alive = False


if TYPE_CHECKING:  # post_request hooks are promised a config.HookResponse

    def _hooks_see_a_response(response: Response) -> HookResponse:
        return response
