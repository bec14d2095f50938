"""The request body as ``wsgi.input`` reads it: pulled from the connection on demand.

Why a module of its own: the body is read by the application, at its pace, long after the
handler parsed the head; the rules for that reading (ask for ``100 Continue`` on the first
read, a minimum arrival rate, large bodies received straight into the buffer handed to the
app) are one job, apart from the request cycle in ``handler.py``. The interim response
itself is the response's to send (``wsgi.response.Response.send_continue``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from greenhorn.http import errors
from greenhorn.http.body import Data, EndOfMessage
from greenhorn.http.parser import NEED_DATA, Request
from greenhorn.workers.connection import RECV_SIZE, Connection, Timeout

__all__ = ["BodySource"]

BIG_RECV = 256 * 1024  # receive size while a large request body is still coming
_monotonic = time.monotonic


class BodySource:
    """Pulls the request body from the parser for ``wsgi.input``, receiving as needed.

    ``send_continue`` (the response's: it sends ``100 Continue`` only while its head has not
    gone out) is called on the first pull, when the client asked for it and sent nothing
    of the body yet. A body that arrives
    slower than ``body_min_rate`` bytes/s, after a grace of ``header_timeout``, is cut off
    with 408.
    """

    __slots__ = (
        "conn",
        "continue_pending",
        "expected",
        "grace",
        "min_rate",
        "received",
        "send_continue",
        "started",
    )

    def __init__(
        self,
        conn: Connection,
        req: Request,
        min_rate: int,
        grace: float,
        send_continue: Callable[[], None],
    ) -> None:
        self.conn = conn
        self.continue_pending = req.expect_continue
        self.min_rate = min_rate
        self.grace = grace
        self.send_continue = send_continue
        self.received = 0
        self.started = 0.0
        self.expected = req.content_length or 0  # 0 for chunked: size unknown

    def _begin(self) -> None:
        """First read: send ``100 Continue`` if asked for, start the min-rate clock."""
        if self.continue_pending:
            self.continue_pending = False
            if not self.conn.parser.buffered:
                self.send_continue()
        if not self.started:
            self.started = _monotonic()

    def _deadline(self) -> float | None:
        if not self.min_rate:
            return None
        return self.started + self.grace + (self.received + 1) / self.min_rate

    def pull(self) -> bytes:
        conn = self.conn
        parser = conn.parser
        self._begin()
        while True:
            event = parser.next_event()
            if event.__class__ is Data:
                self.received += len(event.data)
                return event.data
            if event is NEED_DATA:
                left = self.expected - self.received
                size = BIG_RECV if left > BIG_RECV else RECV_SIZE if left < RECV_SIZE else left
                try:
                    parser.feed(conn.recv(self._deadline(), size))
                except Timeout:
                    raise errors.BodyTimeout("request body arrived too slowly") from None
                continue
            if event.__class__ is EndOfMessage:
                return b""
            raise errors.IncompleteRequest("unexpected event in the body")

    def rest(self, limit: int | None) -> bytes | None:
        """All the rest of a Content-Length body in one bytes object, or None (chunked, or
        more than ``limit`` bytes left: the caller pulls pieces instead).

        The bytes are received straight into the object that is returned (a ``BytesIO``
        buffer handed over by ``getvalue()`` without a copy), not through the parser: a
        large upload is in memory once, not three times.
        """
        conn = self.conn
        parser = conn.parser
        left = parser.body_left()
        if left is None or (limit is not None and left > limit):
            return None
        self._begin()
        out = io.BytesIO()
        if left:
            out.seek(left - 1)
            out.write(b"\0")  # the whole buffer at once
            with out.getbuffer() as view:
                pos = 0
                while pos < left and parser.buffered:  # what arrived with the head
                    event = parser.next_event()
                    data = event.data  # type: ignore[union-attr]
                    view[pos : pos + len(data)] = data
                    pos += len(data)
                while pos < left:
                    try:
                        n = conn.recv_into(view[pos:], self._deadline())
                    except Timeout:
                        raise errors.BodyTimeout("request body arrived too slowly") from None
                    if not n:
                        raise errors.IncompleteRequest("connection closed inside the request body")
                    parser.body_received(n)
                    pos += n
                    self.received += n
        event = parser.next_event()
        if event.__class__ is not EndOfMessage:
            raise errors.IncompleteRequest("unexpected event in the body")  # pragma: no cover
        return out.getvalue()
