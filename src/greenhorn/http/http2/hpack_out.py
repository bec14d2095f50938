"""HPACK for the server's own header blocks, without the dynamic table (RFC 7541 §6).

Why not the hpack library's encoder: it searches and grows a dynamic table for every field
of every response, in pure Python, and that was a third of the server's HTTP/2 cost per
request. A server's responses repeat the same few fields (`:status`, content-type,
server, content-length, a date that changes once a second), so here each field is encoded
once, as an indexed static entry or a literal *without indexing*, and the bytes are
remembered: the encoding of a field then never depends on what went before, and a whole
head costs a few dict lookups. The price is a few bytes per response on the wire (no
Huffman coding, no dynamic-table hits), which the peer's decoder never notices.

h2 holds the encoder (``H2Connection.encoder``) and sets ``header_table_size`` when the
peer's SETTINGS_HEADER_TABLE_SIZE changes; as RFC 7541 §4.2 asks, the next block then opens
with a dynamic table size update (to the new size; the table stays empty either way).
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.table import HeaderTable

__all__ = ["ResponseEncoder"]

_STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
_FULL: dict[tuple[bytes, bytes], int] = {}
_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(_STATIC, start=1):
    _FULL.setdefault((_name, _value), _index)
    _NAMES.setdefault(_name, _index)
_CACHE_MAX = 4096


def _integer(value: int, prefix: int, first: int) -> bytes:
    """RFC 7541 §5.1: ``value`` with a ``prefix``-bit prefix, ``first`` the high bits."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes((first | value,))
    out = bytearray((first | top,))
    value -= top
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field: indexed when the static table has it whole, else a literal without
    indexing (§6.2.2), its name indexed when the static table has the name."""
    index = _FULL.get((name, value))
    if index is not None:
        return bytes((0x80 | index,))
    index = _NAMES.get(name)
    if index is not None:
        head = _integer(index, 4, 0x00)
    else:
        head = b"\x00" + _integer(len(name), 7, 0x00) + name
    return head + _integer(len(value), 7, 0x00) + value


class ResponseEncoder:
    """What h2 asks of its encoder: ``encode(headers)`` and ``header_table_size``."""

    __slots__ = ("_cache", "_pending", "_table_size")

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, bytes], bytes] = {}
        self._table_size = 4096
        self._pending: int | None = None  # a size update to send with the next block

    @property
    def header_table_size(self) -> int:
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        if value != self._table_size:
            self._table_size = value
            self._pending = value

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        cache = self._cache
        parts: list[bytes] = []
        if self._pending is not None:
            parts.append(_integer(self._pending, 5, 0x20))
            self._pending = None
        for field in headers:
            data = cache.get(field)
            if data is None:
                name, value = field
                if isinstance(name, str):
                    name = name.encode("latin-1")
                if isinstance(value, str):
                    value = value.encode("latin-1")
                data = encode_field(name, value)
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[field] = data
            parts.append(data)
        return b"".join(parts)
