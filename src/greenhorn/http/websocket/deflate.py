"""permessage-deflate (RFC 7692): the per-connection zlib streams, once negotiated.

Why a module of its own: compression is the one part of a WebSocket connection that holds
real memory (a zlib stream each way) and can be attacked with tiny inputs (a zip bomb), so
its bounds live in one place: a message never inflates past the reader's size limit, and
the compressor's memory is set by ``DeflateOptions``. Negotiation is the handshake's job
(``handshake.negotiate_deflate``); this module only compresses and inflates.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from greenhorn.http.websocket.errors import InvalidPayload, MessageTooBig

__all__ = ["DeflateOptions", "PerMessageDeflate"]


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """The server's side of permessage-deflate.

    ``window_bits`` and ``mem_level`` size the compressor (zlib needs about
    ``2**(window_bits+2) + 2**(mem_level+9)`` bytes per connection: 32 KiB at 12 and 5,
    256 KiB at 15 and 8); a smaller window than the client allows is always safe, since a
    decoder with a larger window reads it. Messages shorter than ``min_size`` go out
    uncompressed. ``no_context_takeover`` makes every message compress on its own (less
    memory between messages, worse ratio).
    """

    level: int = 6
    window_bits: int = 12
    mem_level: int = 5
    min_size: int = 0
    no_context_takeover: bool = False


_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with (RFC 7692 §7.2.1)


class PerMessageDeflate:
    """The agreed permessage-deflate parameters and the connection's two zlib streams.

    Reading never needs the client's window size: inflating with the largest window reads
    any smaller one, and a persistent inflater reads messages made with or without context
    takeover alike.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "client_no_context_takeover",
        "min_size",
        "options",
        "server_max_window_bits",
        "server_no_context_takeover",
        "window_bits",
    )

    def __init__(
        self,
        options: DeflateOptions,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        window_bits: int = 15,
    ) -> None:
        self.options = options
        self.min_size = options.min_size
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.window_bits = window_bits
        self._compressor: zlib._Compress | None = None
        self._decompressor = zlib.decompressobj(-15)

    def response_value(self) -> str:
        """The Sec-WebSocket-Extensions value of the 101 answer."""
        value = "permessage-deflate"
        if self.server_no_context_takeover:
            value += "; server_no_context_takeover"
        if self.client_no_context_takeover:
            value += "; client_no_context_takeover"
        if self.server_max_window_bits is not None:
            value += f"; server_max_window_bits={self.server_max_window_bits}"
        return value

    def compress(self, data: bytes) -> bytes:
        """One whole message, compressed, without the trailing empty block."""
        comp = self._compressor
        if comp is None:
            opts = self.options
            comp = zlib.compressobj(opts.level, zlib.DEFLATED, -self.window_bits, opts.mem_level)
        out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
        # keep the stream for the next message, unless each message stands alone
        self._compressor = None if self.server_no_context_takeover else comp
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes, limit: int | None, final: bool) -> bytes:
        """Inflate one frame's payload (``final``: the message's last frame), producing at
        most ``limit`` bytes (None: no limit); one byte more raises ``MessageTooBig``, so
        a zip bomb never inflates past the limit."""
        d = self._decompressor
        try:
            if limit is None:
                out = d.decompress(data)
                if final:
                    out += d.decompress(_TAIL)
            else:
                out = d.decompress(data, limit + 1)
                if final and len(out) <= limit and not d.unconsumed_tail:
                    out += d.decompress(_TAIL, limit + 1 - len(out))
                if len(out) > limit or d.unconsumed_tail:
                    raise MessageTooBig("message over the size limit once inflated")
        except zlib.error as exc:
            raise InvalidPayload(f"compressed payload does not inflate: {exc}") from None
        if d.eof:  # a final (BFINAL) block ends the stream: the next message starts afresh
            if d.unused_data:
                raise InvalidPayload("data after the end of a compressed stream")
            self._decompressor = zlib.decompressobj(-15)
        return out
