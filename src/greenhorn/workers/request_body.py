"""The request body as ``wsgi.input`` reads it: pulled from the connection on demand.

Why a module of its own: the body is read by the application, at its pace, long after the
handler parsed the head; the rules for that reading (ask for ``100 Continue`` on the first
read, a minimum arrival rate, large bodies received straight into the buffer handed to the
app, memory that grows only with what arrives) are one job, apart from the request cycle in
``handler.py``. The interim response itself is the response's to send
(``wsgi.response.Response.send_continue``).

Memory follows the bytes received, never a declared Content-Length: a body read whole is
assembled in memory only up to ``body_spool_threshold`` bytes; past that it is received into
an unlinked file in ``tmp_upload_dir`` (``Spool``) and read back into one bytes object once
all of it is here. A head that declares 10 GB and sends nothing costs nothing.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

from greenhorn.http import errors
from greenhorn.http.body import Data, EndOfMessage
from greenhorn.http.parser import NEED_DATA, Request
from greenhorn.ipc.scoreboard import unlinked_file
from greenhorn.workers.connection import RECV_SIZE, Connection, EarlyBody, Timeout

__all__ = ["BodySource", "Spool", "SpoolError", "SpoolFile"]

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
        "done",
        "expected",
        "grace",
        "head",
        "min_rate",
        "received",
        "send_continue",
        "spool",
        "started",
        "trailers",
    )

    def __init__(
        self,
        conn: Connection,
        req: Request,
        min_rate: int,
        grace: float,
        send_continue: Callable[[], None],
        spool: Spool | None = None,
        early: EarlyBody | None = None,
    ) -> None:
        self.conn = conn
        self.continue_pending = req.expect_continue
        self.min_rate = min_rate
        self.grace = grace
        self.send_continue = send_continue
        self.spool = spool if spool is not None else Spool()
        self.received = 0
        self.started = 0.0
        self.expected = req.content_length or 0  # 0 for chunked: size unknown
        self.head = b""  # a chunked body's start, decoded before the application ran
        self.done = False  # ... and it was the whole body
        self.trailers: list[tuple[str, str]] | None = None  # a chunked body's, once read
        if early is not None:  # the rate clock started when the worker began to wait for it
            self.started = early.started
            self.head = bytes(early.data)
            self.done = early.done
            self.trailers = early.trailers

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
        if self.head:
            data = self.head
            self.head = b""
            self.received += len(data)
            return data
        if self.done:
            return b""
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
                self.trailers = event.trailers
                return b""
            raise errors.IncompleteRequest("unexpected event in the body")

    def get_trailers(self) -> list[tuple[str, str]]:
        """The chunked trailer fields, once the whole body was read (else [])."""
        return list(self.trailers or ())

    def rest(self, limit: int | None) -> bytes | None:
        """All the rest of the body in one bytes object, or None (more than ``limit`` bytes
        left, or a chunked body and a ``limit``: the caller pulls pieces instead).

        Up to the spool threshold, a Content-Length body is received straight into the
        object that is returned (a ``BytesIO`` buffer handed over by ``getvalue()`` without
        a copy), not through the parser: a large upload is in memory once, not three times.
        Above it, and for a chunked body once it passes the threshold, the bytes go to a
        spool file first (``Spool``), and memory is taken only for what has arrived.
        """
        conn = self.conn
        parser = conn.parser
        left = parser.body_left()
        if left is None:
            return self._whole_chunked() if limit is None else None
        if limit is not None and left > limit:
            return None
        if left > self.spool.threshold:
            return self._spooled(left)
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

    def _spooled(self, left: int) -> bytes:
        """The rest of a Content-Length body, received into a spool file, then read back."""
        conn = self.conn
        parser = conn.parser
        self._begin()
        spooled = self.spool.open()
        try:
            while parser.buffered:  # what arrived with the head
                data = parser.next_event().data  # type: ignore[union-attr]
                spooled.write(data)
                self.received += len(data)
            left -= spooled.size
            buf = bytearray(min(BIG_RECV, left))
            view = memoryview(buf)
            while left:
                try:
                    n = conn.recv_into(view[: min(left, len(buf))], self._deadline())
                except Timeout:
                    raise errors.BodyTimeout("request body arrived too slowly") from None
                if not n:
                    raise errors.IncompleteRequest("connection closed inside the request body")
                parser.body_received(n)
                spooled.write(view[:n])
                left -= n
                self.received += n
            if parser.next_event().__class__ is not EndOfMessage:
                raise errors.IncompleteRequest("unexpected event in the body")  # pragma: no cover
            return spooled.read_back()
        finally:
            spooled.close()

    def _whole_chunked(self) -> bytes:
        """All the rest of a chunked body: in memory up to the spool threshold, then spooled."""
        parts: list[bytes] = []
        size = 0
        threshold = self.spool.threshold
        while data := self.pull():
            parts.append(data)
            size += len(data)
            if size > threshold:
                break
        else:
            return b"".join(parts)
        spooled = self.spool.open()
        try:
            for data in parts:
                spooled.write(data)
            del parts[:]
            while data := self.pull():
                spooled.write(data)
            return spooled.read_back()
        finally:
            spooled.close()


class SpoolError(Exception):
    """The spool file could not be created, written or read back (``tmp_upload_dir``
    missing, not writable, full). Not an ``OSError``: the handler must not take it for a
    client that went away; it answers 500 and logs it."""


class SpoolFile:
    """An unlinked temporary file that collects a request body as it arrives."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise SpoolError(f"cannot write the request body's spool file: {exc}") from None

    def read_back(self) -> bytes:
        """Everything written, as one bytes object (allocated once, now that it is all here)."""
        size = self.size
        if not size:
            return b""
        out = io.BytesIO()
        out.seek(size - 1)
        out.write(b"\0")
        with out.getbuffer() as view:
            pos = 0
            while pos < size:
                try:
                    n = os.preadv(self.fd, [view[pos:]], pos)
                except OSError as exc:
                    raise SpoolError(f"cannot read the request body back: {exc}") from None
                if n <= 0:
                    raise SpoolError("the spool file is shorter than what was written")
                pos += n
        return out.getvalue()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Spool:
    """Where large bodies read whole go (``tmp_upload_dir``), and from what size
    (``body_spool_threshold``)."""

    __slots__ = ("directory", "threshold")

    def __init__(self, threshold: int = 1 << 20, directory: str | None = None) -> None:
        self.threshold = threshold
        self.directory = directory

    def open(self) -> SpoolFile:
        """A new spool file, never visible by name (``ipc.scoreboard.unlinked_file``)."""
        try:
            return SpoolFile(unlinked_file(self.directory))
        except OSError as exc:
            where = self.directory or "the temporary directory"
            raise SpoolError(f"cannot spool a request body in {where}: {exc}") from None
