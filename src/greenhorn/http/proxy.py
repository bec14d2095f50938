"""The PROXY protocol header (HAProxy's v1 text and v2 binary forms), sans-IO.

Why a module of its own: a load balancer that speaks the PROXY protocol prefixes each
connection with the real client's address. Reading that prefix is a tiny parser of its own,
with its own failure modes, and like the HTTP parser it must be testable byte by byte without
a socket. The handler feeds it what it has received so far and gets one of three answers:

- ``NEED_DATA``: the bytes could still be the start of a header the mode allows;
- ``None``: they definitely are not; plain HTTP follows (the header is optional, as in
  gunicorn);
- a ``ProxyHeader``: the addresses and how many bytes the header took.

Malformed headers raise ``errors.InvalidProxyHeader``; the handler then closes the connection
without answering (the peer is a proxy, not an HTTP client).

Strictness (spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt):

- v1: at most 107 bytes including CRLF; exactly ``PROXY SP family SP src SP dst SP sport SP
  dport CRLF`` with single spaces; family TCP4, TCP6 or UNKNOWN; addresses must parse as the
  family says (no leading zeros, no IPv6 zone ids); ports are 1-5 ASCII digits without sign
  or leading zero, at most 65535. ``PROXY UNKNOWN`` ignores the rest of its line.
- v2: version 2; command LOCAL or PROXY; address family/transport UNSPEC, TCP over IPv4 or
  TCP over IPv6 (UDP and AF_UNIX are refused: this is an HTTP server); the length must hold
  the addresses and is capped at ``MAX_V2_LENGTH``. TLVs are skipped, not interpreted.
- LOCAL (v2) and UNKNOWN / UNSPEC mean "keep the real peer address" (``local=True``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

from greenhorn.http import errors
from greenhorn.http.parser import NEED_DATA

__all__ = ["MAX_V1_LENGTH", "MAX_V2_LENGTH", "V1_PREFIX", "V2_SIGNATURE", "ProxyHeader", "parse"]

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_V1_LENGTH = 107  # the whole line, CRLF included (spec §2.1)
MAX_V2_LENGTH = 4096  # the v2 length field (addresses + TLVs); HAProxy sends far less
_V2_HEAD = 16
_DIGITS = frozenset(b"0123456789")
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21
_V2_UNSPEC = 0x00

Mode = Literal["v1", "v2", "auto"]


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY header. With ``local`` the addresses are empty and the ports 0."""

    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int
    consumed: int
    local: bool
    version: int


def parse(data: bytes, mode: str) -> ProxyHeader | object | None:
    """Parse a PROXY header at the start of ``data``; see the module docstring.

    ``mode`` is "v1", "v2" or "auto" (either). Returns ``NEED_DATA``, ``None`` or a
    ``ProxyHeader``; raises ``errors.InvalidProxyHeader`` for a malformed header.
    """
    if mode not in ("v1", "v2", "auto"):
        raise ValueError(f"unknown PROXY protocol mode {mode!r}")
    data = bytes(data)
    maybe = False
    if mode != "v1":
        if data.startswith(V2_SIGNATURE):
            return _parse_v2(data)
        if V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]):
            maybe = True
    if mode != "v2":
        if data.startswith(V1_PREFIX):
            return _parse_v1(data)
        if V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
            maybe = True
    return NEED_DATA if maybe else None


# -- v1 ---------------------------------------------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | object:
    window = data[:MAX_V1_LENGTH]
    end = window.find(b"\n")
    if end < 0:
        cr = window.find(b"\r")
        if 0 <= cr < len(window) - 1:
            raise errors.InvalidProxyHeader("PROXY v1: CR not followed by LF")
        if len(data) >= MAX_V1_LENGTH:
            raise errors.InvalidProxyHeader(f"PROXY v1: line longer than {MAX_V1_LENGTH} bytes")
        return NEED_DATA
    if window[end - 1 : end] != b"\r":
        raise errors.InvalidProxyHeader("PROXY v1: line does not end with CRLF")
    line = window[: end - 1]
    consumed = end + 1
    if b"\r" in line:
        raise errors.InvalidProxyHeader("PROXY v1: stray CR in the line")
    parts = line.split(b" ")
    family = parts[1]
    if family == b"UNKNOWN":
        return ProxyHeader("", 0, "", 0, consumed, local=True, version=1)
    if family not in (b"TCP4", b"TCP6"):
        raise errors.InvalidProxyHeader(
            f"PROXY v1: unsupported family {errors.excerpt(family, 16)!r}"
        )
    if len(parts) != 6:
        raise errors.InvalidProxyHeader("PROXY v1: expected 6 space-separated fields")
    version = 4 if family == b"TCP4" else 6
    src = _v1_address(parts[2], version)
    dst = _v1_address(parts[3], version)
    src_port = _v1_port(parts[4])
    dst_port = _v1_port(parts[5])
    return ProxyHeader(src, src_port, dst, dst_port, consumed, local=False, version=1)


def _v1_address(raw: bytes, version: int) -> str:
    try:
        text = raw.decode("ascii")
        if "%" in text:  # IPv6 zone ids have no meaning across hosts
            raise ValueError(text)
        addr = ipaddress.IPv4Address(text) if version == 4 else ipaddress.IPv6Address(text)
    except (UnicodeDecodeError, ValueError):
        raise errors.InvalidProxyHeader(
            f"PROXY v1: invalid IPv{version} address {errors.excerpt(raw)!r}"
        ) from None
    return str(addr)


def _v1_port(raw: bytes) -> int:
    if (
        not 1 <= len(raw) <= 5
        or not _DIGITS.issuperset(raw)
        or (len(raw) > 1 and raw[0] == 0x30)  # leading zero
    ):
        raise errors.InvalidProxyHeader(f"PROXY v1: invalid port {errors.excerpt(raw, 8)!r}")
    port = int(raw)
    if port > 65535:
        raise errors.InvalidProxyHeader(f"PROXY v1: port {port} out of range")
    return port


# -- v2 ---------------------------------------------------------------------------------------


def _parse_v2(data: bytes) -> ProxyHeader | object:
    if len(data) < _V2_HEAD:
        return NEED_DATA
    ver_cmd = data[12]
    if ver_cmd >> 4 != 2:
        raise errors.InvalidProxyHeader(f"PROXY v2: unsupported version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command > 1:
        raise errors.InvalidProxyHeader(f"PROXY v2: unsupported command {command}")
    fam = data[13]
    length = int.from_bytes(data[14:16], "big")
    if length > MAX_V2_LENGTH:
        raise errors.InvalidProxyHeader(f"PROXY v2: length {length} over {MAX_V2_LENGTH}")
    if command == 1 and fam not in (_V2_UNSPEC, _V2_TCP4, _V2_TCP6):
        raise errors.InvalidProxyHeader(
            f"PROXY v2: unsupported address family/transport 0x{fam:02x}"
        )
    need = 12 if fam == _V2_TCP4 else 36 if fam == _V2_TCP6 else 0
    if command == 1 and length < need:  # a LOCAL header may leave the address block out
        raise errors.InvalidProxyHeader(
            f"PROXY v2: length {length} too short for the addresses ({need})"
        )
    consumed = _V2_HEAD + length
    if len(data) < consumed:
        return NEED_DATA
    if command == 0 or fam == _V2_UNSPEC:
        # LOCAL (a health check from the proxy itself) or PROXY for an unknown protocol:
        # the address block must be ignored (spec §2.2), so it is skipped unread.
        return ProxyHeader("", 0, "", 0, consumed, local=True, version=2)
    body = data[_V2_HEAD:consumed]
    _check_tlvs(body[need:])
    size = 4 if fam == _V2_TCP4 else 16
    cls = ipaddress.IPv4Address if fam == _V2_TCP4 else ipaddress.IPv6Address
    src = str(cls(body[:size]))
    dst = str(cls(body[size : 2 * size]))
    ports = body[2 * size : 2 * size + 4]
    return ProxyHeader(
        src,
        int.from_bytes(ports[:2], "big"),
        dst,
        int.from_bytes(ports[2:], "big"),
        consumed,
        local=False,
        version=2,
    )


def _check_tlvs(tlvs: bytes) -> None:
    """Walk the TLVs only to check that they fill the header exactly (values are ignored)."""
    pos = 0
    while pos < len(tlvs):
        if len(tlvs) - pos < 3:
            raise errors.InvalidProxyHeader("PROXY v2: truncated TLV")
        size = int.from_bytes(tlvs[pos + 1 : pos + 3], "big")
        pos += 3 + size
        if pos > len(tlvs):
            raise errors.InvalidProxyHeader("PROXY v2: TLV longer than the header")


def mode_from_setting(value: Any) -> str:
    """``proxy_protocol`` as off|v1|v2|auto (gunicorn's boolean form means auto)."""
    if value is True:
        return "auto"
    if not value:
        return "off"
    return str(value)
