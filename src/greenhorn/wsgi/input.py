"""``wsgi.input``: the request body as the application reads it.

Why a module of its own: the application reads the body at its own pace, with ``read``,
``readline`` or iteration, long after the head was parsed; how those reads turn into pulls
from the connection is one job, apart from the environ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = ["Body"]


class Body:
    """``wsgi.input``: a bounded-memory reader over the request body.

    ``pull()`` returns the next piece of body (bytes) or ``b""`` at the end. The worker
    supplies it; it reads from the parser, receiving from the socket as needed, and sends
    ``100 Continue`` the first time it is called when the client asked for it.

    Reads are linear in the body size: pieces are collected in a list and joined once
    (re-concatenating a growing buffer per piece made a 32 MB upload take seconds). When
    the worker also supplies ``rest(limit)``, a read that wants everything that is left
    (``read()``, or ``read(n)`` with at most ``n`` bytes left) gets it in one piece from
    there, received once, without going through pieces at all.
    """

    __slots__ = ("_buf", "_done", "_pull", "_rest")

    def __init__(
        self,
        pull: Callable[[], bytes] | None,
        rest: Callable[[int | None], bytes | None] | None = None,
    ) -> None:
        self._pull = pull
        self._rest = rest  # all the rest in one piece, if at most N bytes are left (or None)
        self._buf = b""
        self._done = pull is None

    @property
    def finished(self) -> bool:
        """True when the whole body has been read (by the app or by ``drain``)."""
        return self._done and not self._buf

    def _next(self) -> bytes:
        """The next piece from the source, ``b""`` (and done) at the end."""
        if self._done:
            return b""
        data = self._pull()  # type: ignore[misc]
        if not data:
            self._done = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if not buf and self._rest is not None and not self._done:
            data = self._rest(None if size is None or size < 0 else size)
            if data is not None:
                self._done = True
                return data
        if size is None or size < 0:
            parts = [buf] if buf else []
            while data := self._next():
                parts.append(data)
            self._buf = b""
            return b"".join(parts)
        if len(buf) >= size:
            self._buf = buf[size:]
            return buf[:size]
        parts = [buf] if buf else []
        have = len(buf)
        while have < size and (data := self._next()):
            parts.append(data)
            have += len(data)
        data = b"".join(parts)
        self._buf = data[size:]
        return data[:size]

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        parts: list[bytes] = []
        have = 0
        piece = self._buf
        self._buf = b""
        while True:
            end = piece.find(b"\n")
            if end >= 0:
                end += 1
            if limit is not None and have + (end if end >= 0 else len(piece)) > limit:
                end = limit - have
            if end >= 0:
                parts.append(piece[:end])
                self._buf = piece[end:]
                break
            parts.append(piece)
            have += len(piece)
            piece = self._next()
            if not piece:
                break
        return b"".join(parts)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, limit: int) -> bool:
        """Discard the rest of the body, reading at most ``limit`` bytes; True if finished."""
        self._buf = b""
        seen = 0
        while seen <= limit:
            if self._done:
                return True
            data = self._next()
            seen += len(data)
        return self._done
