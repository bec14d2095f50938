"""HPACK for the peer's header blocks: the hpack library's decoder, remembering blocks.

Why: a client sends nearly the same request head again and again, and after its first
requests it sends it as the very same bytes (indexed fields of the static and dynamic
tables: h2load's is six bytes). Decoding them with hpack costs a Python call per field,
its debug logging included; that was a tenth of the server's HTTP/2 cost per request.

HPACK is stateful across the connection (RFC 7541 §2.3.2): the same bytes decode to other
fields once the dynamic table changed. So a block is remembered only if decoding it left
the table as it was (no literal with incremental indexing, no size update), and every
remembered block is forgotten as soon as the table changes: ``_Table`` counts its changes
(``version``), and a block's fields are reused only at the version they were decoded at.
Everything else (a miss, a block that changes the table, every error: an index past the
table, a bad Huffman string, a size update over the allowed maximum, a header list over
``max_header_list_size``) is hpack's own decoding. A block that cannot be decoded is a
connection error of type COMPRESSION_ERROR (RFC 9113 §4.3; h2 would say PROTOCOL_ERROR):
``CompressionError``, an h2 ``ProtocolError`` carrying that code, which h2 passes through
to its GOAWAY. A header list over the limit stays hpack's ``OversizedHeaderListError``,
which h2 answers with ENHANCE_YOUR_CALM. A remembered block decoded within ``max_header_list_size`` once; it is reused
only while that limit and the table's size limits are unchanged. What a connection keeps
is small and bounded: at most ``CACHE_BLOCKS`` blocks of ``CACHE_BLOCK_BYTES`` bytes and
``CACHE_BLOCK_FIELDS`` fields (a short block may name a large entry many times: such
blocks are decoded every time, as before).
"""

from __future__ import annotations

from collections.abc import Iterable

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hpack import Decoder, HeaderTuple
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hpack.table import HeaderTable

__all__ = ["CachingDecoder", "CompressionError"]

CACHE_BLOCKS = 16  # remembered blocks per connection...
CACHE_BLOCK_BYTES = 512  # ...each at most this long...
CACHE_BLOCK_FIELDS = 64  # ...and this many fields (what a connection keeps stays small)


class CompressionError(ProtocolError):
    """A header block that cannot be decoded (RFC 9113 §4.3: COMPRESSION_ERROR)."""

    error_code = ErrorCodes.COMPRESSION_ERROR


class _Table(HeaderTable):
    """hpack's table, counting its changes: an entry added (and any evicted with it), a
    size update (``CachingDecoder._update_encoding_context``)."""

    def __init__(self) -> None:
        self.version = 0
        super().__init__()

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)


class CachingDecoder(Decoder):
    """``hpack.Decoder`` that answers a block it decoded before, at the same table state,
    from memory (``raw=True`` only, as h2 asks)."""

    def __init__(self, max_header_list_size: int = 65536) -> None:
        super().__init__(max_header_list_size)
        table = _Table()
        self.header_table = table
        self._table = table
        self._blocks: dict[bytes, list[HeaderTuple]] = {}
        self._at: tuple[int, int, int, int] = (-1, 0, 0, 0)  # the state they were decoded at

    def _update_encoding_context(self, data: bytes | memoryview) -> int:
        self._table.version += 1  # a size update: entries may go, even to the same size
        return super()._update_encoding_context(data)

    def _state(self) -> tuple[int, int, int, int]:
        table = self._table
        return (
            table.version,
            table.maxsize,
            self.max_allowed_table_size,
            self.max_header_list_size,
        )

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if not raw:
            return self._decode(data, raw)
        blocks = self._blocks
        if blocks:
            known = blocks.get(data)
            if known is not None and self._at == self._state():
                return known
        before = self._table.version
        headers = self._decode(data, raw)
        if self._table.version == before and len(data) <= CACHE_BLOCK_BYTES:
            if not isinstance(headers, list):
                headers = list(headers)
            if len(headers) <= CACHE_BLOCK_FIELDS:
                state = self._state()
                if state != self._at or len(blocks) >= CACHE_BLOCKS:
                    blocks.clear()
                    self._at = state
                blocks[bytes(data)] = headers
        return headers

    def _decode(self, data: bytes, raw: bool) -> Iterable[HeaderTuple]:
        try:
            return super().decode(data, raw)
        except OversizedHeaderListError:
            raise  # h2: ENHANCE_YOUR_CALM
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise CompressionError(f"Error decoding header block: {exc}") from exc
