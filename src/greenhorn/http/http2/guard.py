"""A scan of the frames a peer sends, before the h2 library parses them: floods and
oversized header blocks end the connection while they are still cheap.

Why before h2: h2 parses every frame fully and keeps a header block's frames until the
block ends (up to 64 CONTINUATION frames of the largest frame size). Reading only the
9-byte frame headers as bytes stream by, the guard can refuse:

- **rapid reset** (CVE-2023-44487): RST_STREAM frames are counted in a token bucket
  (``RESETS`` at once, refilled at ``RESET_RATE`` a second); past it the connection ends
  with ENHANCE_YOUR_CALM. A client that cancels a few requests never comes near it.
- **control floods**: PING, SETTINGS, PRIORITY, unknown frame types and empty DATA frames
  without END_STREAM each cost work and carry no request; they share one bucket
  (``CONTROLS``, refilled at ``CONTROL_RATE`` a second).
- **the CONTINUATION flood** (CVE-2024-27316): a header block (HEADERS and its
  CONTINUATION frames) is refused as soon as its frame headers announce more than
  ``max_block`` bytes or more than ``MAX_BLOCK_FRAMES`` frames, before the payload is even
  received, let alone assembled or decompressed.

It also takes the peer's GOAWAY frames out of the stream (reporting them in ``goaway``):
h2 answers one by closing its state machine, which would refuse the responses of the
streams a graceful GOAWAY lets finish (RFC 9113 §6.8). To do that it never passes a partial
frame *header* on (at most 8 bytes wait for the next read).

The clock is the caller's (``now``, in seconds), so the guard is tested without sleeping.
"""

from __future__ import annotations

__all__ = [
    "CONTROLS",
    "CONTROL_RATE",
    "MAX_BLOCK_FRAMES",
    "RESETS",
    "RESET_RATE",
    "Calm",
    "FrameGuard",
]

CONTROLS = 1000  # control frames a peer may send at once...
CONTROL_RATE = 100.0  # ...and per second after that
RESETS = 200  # RST_STREAM frames at once...
RESET_RATE = 20.0  # ...and per second after that
MAX_BLOCK_FRAMES = 32  # CONTINUATION frames one header block may have
_HEADER = 9
_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = range(10)
_END_STREAM = 0x1
_END_HEADERS = 0x4
_PREFACE_LENGTH = 24


class Calm(Exception):
    """The peer exceeded a bound: end the connection with ENHANCE_YOUR_CALM."""


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "since")

    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity = float(capacity)
        self.rate = rate
        self.level = float(capacity)
        self.since = 0.0

    def take(self, now: float) -> bool:
        level = self.level
        if level < 1.0:
            level = min(self.capacity, level + (now - self.since) * self.rate)
            self.since = now
            if level < 1.0:
                self.level = level
                return False
        elif level < self.capacity:
            level = min(self.capacity, level + (now - self.since) * self.rate)
            self.since = now
        else:
            self.since = now
        self.level = level - 1.0
        return True


class FrameGuard:
    """Scans one connection's incoming bytes. See the module docstring."""

    __slots__ = (
        "_block",
        "_block_frames",
        "_carry",
        "_controls",
        "_cut",
        "_goaway_head",
        "_preface",
        "_resets",
        "_skip",
        "goaway",
        "max_block",
    )

    def __init__(self, max_block: int, preface: bool = True) -> None:
        self.max_block = max_block
        self._preface = _PREFACE_LENGTH if preface else 0  # preface bytes still to pass
        self._skip = 0  # payload bytes of the current frame still to come
        self._cut = False  # ...and they belong to a GOAWAY frame: not passed on
        self._carry = b""  # the start of a frame header that did not arrive whole
        self._block = -1  # bytes of the header block in progress, -1: none
        self._block_frames = 0
        self._goaway_head = b""  # the first 8 payload bytes of a GOAWAY being cut
        self._controls = _Bucket(CONTROLS, CONTROL_RATE)
        self._resets = _Bucket(RESETS, RESET_RATE)
        # (last stream id, error code) of each GOAWAY the peer sent, oldest first
        self.goaway: list[tuple[int, int]] = []

    def scan(self, data: bytes, now: float) -> bytes:
        """The bytes to give h2 for ``data`` (GOAWAY frames taken out, a partial frame
        header held back). Raises ``Calm``."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        size = len(data)
        pos = 0
        if self._preface:
            pos = min(self._preface, size)
            self._preface -= pos
        kept: list[bytes] | None = None  # pieces to pass on, once something is cut
        keep_from = 0
        if self._skip:
            n = min(self._skip, size - pos)
            if self._cut:  # the rest of a GOAWAY frame
                kept = [data[keep_from:pos]]
                self._goaway_head += data[pos : pos + min(n, 8 - len(self._goaway_head))]
                keep_from = pos + n
            pos += n
            self._skip -= n
            if self._cut and not self._skip:
                self._cut = False
                self._goaway_done()
        while pos < size:
            if size - pos < _HEADER:
                self._carry = data[pos:]
                break
            length = int.from_bytes(data[pos : pos + 3], "big")
            kind = data[pos + 3]
            flags = data[pos + 4]
            start = pos
            pos += _HEADER
            if kind == _DATA:
                if not length and not flags & _END_STREAM and not self._controls.take(now):
                    raise Calm("flood of empty DATA frames")
            elif kind in (_HEADERS, _CONT):
                self._header_block(kind, length, flags)
            elif kind == _RST:
                if not self._resets.take(now):
                    raise Calm("flood of RST_STREAM frames (rapid reset)")
            elif kind == _GOAWAY:
                if kept is None:
                    kept = []
                kept.append(data[keep_from:start])
                n = min(length, size - pos)
                self._goaway_head = data[pos : pos + min(n, 8)]
                pos += n
                keep_from = pos
                self._skip = length - n
                self._cut = self._skip > 0
                if not self._cut:
                    self._goaway_done()
                continue
            elif kind not in (_WINDOW, _PUSH) and not self._controls.take(now):
                raise Calm("flood of control frames")  # PRIORITY, SETTINGS, PING, unknown
            n = min(length, size - pos)
            pos += n
            self._skip = length - n
        end = size - len(self._carry)
        if kept is None:
            return data if not self._carry else data[:end]
        kept.append(data[keep_from:end])
        return b"".join(kept)

    def _header_block(self, kind: int, length: int, flags: int) -> None:
        if kind == _HEADERS:
            block = length
            frames = 1
        elif self._block < 0:
            return  # a CONTINUATION outside a block: h2 refuses it (PROTOCOL_ERROR)
        else:
            block = self._block + length
            frames = self._block_frames + 1
        if block > self.max_block:
            raise Calm(f"header block over {self.max_block} bytes")
        if frames > MAX_BLOCK_FRAMES:
            raise Calm(f"header block in more than {MAX_BLOCK_FRAMES} frames")
        if flags & _END_HEADERS:
            self._block = -1
            self._block_frames = 0
        else:
            self._block = block
            self._block_frames = frames

    def refused(self, now: float) -> bool:
        """A stream the server refused (past SETTINGS_MAX_CONCURRENT_STREAMS) costs like a
        reset (the rapid-reset bucket); False once the peer is past the bound."""
        return self._resets.take(now)

    def _goaway_done(self) -> None:
        head = self._goaway_head
        if len(head) >= 8:
            last = int.from_bytes(head[:4], "big") & 0x7FFFFFFF
            code = int.from_bytes(head[4:8], "big")
        else:  # too short to be a GOAWAY: treat as a protocol error from the peer
            last, code = 0, 1
        self.goaway.append((last, code))
        self._goaway_head = b""
