"""Body framing readers: turn the connection buffer into Data / EndOfMessage events.

Why separate readers: each framing (Content-Length, chunked) is a tiny state machine with its
own failure modes; keeping them apart from head parsing keeps both readable (h11's
``_readers.py`` shape). A reader consumes from the shared ``bytearray`` and returns one event
or ``None`` when it needs more bytes. It never holds more than it was given: a Data event
carries at most what is already buffered, so memory stays bounded by the receive size.

Chunked grammar enforced (RFC 9112 §7.1), with no leniency:

- chunk-size is 1 to 16 HEXDIG; no sign, no ``0x``, no whitespace except BWS before ``;``;
- chunk-ext is ``*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )``; a bare CR,
  LF or any CTL there is an error (the grenfeldt.dev bare-LF desync);
- chunk data is followed by exactly CRLF (h11 CVE-2025-43859 accepted any two bytes);
- the last chunk is followed by trailer fields and an empty line; a truncated body is an
  error, never a complete message (gunicorn #3382);
- trailers that could change framing, routing or authentication are refused and trailers are
  never merged into the headers.
"""

from __future__ import annotations

import re

from greenhorn.http import errors
from greenhorn.http.fields import (
    FIELD_BLOCK_RE,
    SPACED_FIELD_RE,
    TCHAR,
    diagnose_line,
    split_field,
    strip_name_space,
)
from greenhorn.http.limits import Limits

MAX_CHUNK_LINE = 4096
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*+"'
_EXT = f"[ \t]*+;[ \t]*+[{TCHAR}]++(?:[ \t]*+=[ \t]*+(?:[{TCHAR}]++|{_QUOTED}))?+"
CHUNK_LINE_RE = re.compile(f"([0-9A-Fa-f]{{1,16}})(?:{_EXT})*+".encode("latin-1"))
# the same line with its CRLF, matched in place in the buffer (whole-chunk fast path)
CHUNK_HEAD_RE = re.compile(f"([0-9A-Fa-f]{{1,16}})(?:{_EXT})*+\r\n".encode("latin-1"))

FORBIDDEN_TRAILERS = frozenset(
    (
        "CONTENT-LENGTH",
        "TRANSFER-ENCODING",
        "TRAILER",
        "TE",
        "HOST",
        "CONNECTION",
        "KEEP-ALIVE",
        "UPGRADE",
        "PROXY-CONNECTION",
        "AUTHORIZATION",
        "PROXY-AUTHORIZATION",
        "COOKIE",
        "CONTENT-TYPE",
        "CONTENT-ENCODING",
        "CONTENT-RANGE",
        "EXPECT",
        "RANGE",
        "MAX-FORWARDS",
    )
)


def _take(buf: bytearray, n: int) -> bytes:
    """Remove and return up to ``n`` bytes from the front of ``buf``."""
    if len(buf) <= n:
        data = bytes(buf)
        buf.clear()
    else:
        data = bytes(buf[:n])
        del buf[:n]
    return data


class Data:
    """A piece of the request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The body is complete; ``trailers`` holds chunked trailer fields (UPPER names)."""

    __slots__ = ("trailers",)

    def __init__(self, trailers: list[tuple[str, str]] | None = None) -> None:
        self.trailers = trailers if trailers is not None else []

    def __repr__(self) -> str:
        return f"EndOfMessage({self.trailers!r})"


END = EndOfMessage(())  # type: ignore[arg-type]  # shared, immutable: no trailers


class ContentLengthReader:
    """Exactly ``remaining`` bytes of body."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def read(self, buf: bytearray, eof: bool, limits: Limits) -> Data | EndOfMessage | None:
        if self.remaining == 0:
            return END
        if not buf:
            if eof:
                raise errors.IncompleteRequest("connection closed inside the request body")
            return None
        data = _take(buf, self.remaining)
        self.remaining -= len(data)
        return Data(data)


_SIZE, _DATA, _DATA_END, _TRAILERS = range(4)


class ChunkedReader:
    """Transfer-Encoding: chunked, strictly.

    Whole chunks already in the buffer are taken in one pass and returned as one ``Data``
    (``_whole_chunks``): a body of a million one-byte chunks costs a few Data events, not a
    million, and the buffer is cut once. Anything else (a chunk still arriving, the last
    chunk, trailers, every error) goes through the state machine byte-exactly, so what is
    accepted or refused does not depend on how the bytes were split.
    """

    __slots__ = ("remaining", "state", "total", "trailer_bytes", "trailers")

    def __init__(self) -> None:
        self.state = _SIZE
        self.remaining = 0
        self.total = 0  # body bytes returned so far (limit_request_body)
        self.trailers: list[tuple[str, str]] = []
        self.trailer_bytes = 0

    def read(self, buf: bytearray, eof: bool, limits: Limits) -> Data | EndOfMessage | None:
        if self.state == _DATA_END and buf[:2] == b"\r\n":  # the end of the last chunk read
            del buf[:2]
            self.state = _SIZE
        if self.state == _SIZE and len(buf) > 5:  # room for at least one whole chunk
            data = self._whole_chunks(buf)
            if data:
                return self._counted(data, limits)
        while True:
            state = self.state
            if state == _DATA:
                if not buf:
                    return self._need(eof)
                data = _take(buf, self.remaining)
                self.remaining -= len(data)
                if self.remaining == 0:
                    self.state = _DATA_END
                return self._counted(data, limits)
            if state == _SIZE:
                line = self._line(buf, eof, MAX_CHUNK_LINE, errors.InvalidChunk)
                if line is None:
                    return None
                m = CHUNK_LINE_RE.fullmatch(line)
                if m is None:
                    raise errors.InvalidChunk(f"invalid chunk size line {errors.excerpt(line)}")
                size = int(m.group(1), 16)
                if size:
                    self.remaining = size
                    self.state = _DATA
                else:
                    self.state = _TRAILERS
            elif state == _DATA_END:
                if len(buf) < 2:
                    if buf and buf[0] != 13:  # one byte, and not the CR of a CRLF
                        raise errors.InvalidChunk("chunk data not followed by CRLF")
                    return self._need(eof)
                if buf[0] != 13 or buf[1] != 10:
                    raise errors.InvalidChunk("chunk data not followed by CRLF")
                del buf[:2]
                self.state = _SIZE
            else:
                return self._read_trailer(buf, eof, limits)

    def _counted(self, data: bytes, limits: Limits) -> Data:
        self.total += len(data)
        if limits.max_body and self.total > limits.max_body:
            raise errors.PayloadTooLarge(f"request body over {limits.max_body} bytes")
        return Data(data)

    @staticmethod
    def _whole_chunks(buf: bytearray) -> bytes:
        """The data of the complete, valid, non-empty chunks at the front of ``buf``, which
        are removed from it; b"" if there is none. Stops before anything else (a partial or
        invalid chunk, the last chunk), which the state machine then reads."""
        match = CHUNK_HEAD_RE.match
        end_of_buffer = len(buf)
        out = bytearray()
        pos = 0
        while True:
            m = match(buf, pos)
            if m is None:
                break
            start = m.end()
            if start - pos - 2 > MAX_CHUNK_LINE:
                break
            size = int(m.group(1), 16)
            stop = start + size
            if not size or stop + 2 > end_of_buffer or buf[stop] != 13 or buf[stop + 1] != 10:
                break
            out += buf[start:stop]
            pos = stop + 2
        if pos:
            del buf[:pos]
        return bytes(out)

    def _read_trailer(self, buf: bytearray, eof: bool, limits: Limits) -> EndOfMessage | None:
        while True:
            line = self._line(buf, eof, limits.field_limit, errors.InvalidTrailer)
            if line is None:
                return None
            if not line:
                return EndOfMessage(self.trailers)
            text = line.decode("latin-1")
            if FIELD_BLOCK_RE.fullmatch(text) is None:
                # "Name : value" too where the head allows it (gunicorn's setting covers both)
                if not (limits.strip_header_spaces and SPACED_FIELD_RE.fullmatch(text)):
                    raise diagnose_line(text, errors.InvalidTrailer)
                text = strip_name_space(text)
                if FIELD_BLOCK_RE.fullmatch(text) is None:
                    raise diagnose_line(text, errors.InvalidTrailer)
            name, value = split_field(text)
            if name in FORBIDDEN_TRAILERS:
                raise errors.InvalidTrailer(f"{name} is not allowed in trailers")
            if len(self.trailers) >= limits.fields_limit:
                raise errors.InvalidTrailer("too many trailer fields")
            if "_" in name and limits.header_map != "dangerous":
                if limits.header_map == "refuse":
                    raise errors.InvalidTrailer(f"underscore in trailer name {name}")
                continue
            self.trailers.append((name, value))

    @staticmethod
    def _line(buf: bytearray, eof: bool, limit: int, error: type[errors.HTTPError]) -> bytes | None:
        """Take one CRLF-terminated line off the buffer, or None if it is not complete."""
        end = buf.find(b"\r\n", 0, limit + 2)
        if end < 0:
            lf = buf.find(b"\n", 0, limit + 2)
            if lf >= 0:
                raise error("bare LF in chunked framing")
            cr = buf.find(b"\r", 0, limit + 2)
            if 0 <= cr < len(buf) - 1:
                raise error("bare CR in chunked framing")
            if len(buf) > limit + (1 if buf[-1:] == b"\r" else 0):
                raise error("chunk size line or trailer too long")
            if eof:
                raise errors.IncompleteRequest("connection closed inside the chunked body")
            return None
        line = bytes(buf[:end])
        if b"\n" in line or b"\r" in line:
            raise error("bare CR or LF in chunked framing")
        del buf[: end + 2]
        return line

    @staticmethod
    def _need(eof: bool) -> None:
        if eof:
            raise errors.IncompleteRequest("connection closed inside the chunked body")
        return None
