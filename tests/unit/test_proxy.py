"""greenhorn.http.proxy: PROXY protocol v1/v2 parsing, in every split, and its refusals."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest

from greenhorn.http import errors, proxy
from greenhorn.http.parser import NEED_DATA

SIG = proxy.V2_SIGNATURE
HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(
    command: int = 1,
    fam: int = 0x11,
    body: bytes | None = None,
    version: int = 2,
    length: int | None = None,
) -> bytes:
    if body is None:
        body = bytes([1, 2, 3, 4, 5, 6, 7, 8]) + struct.pack(">HH", 1111, 80)
    size = len(body) if length is None else length
    return SIG + bytes([(version << 4) | command, fam]) + struct.pack(">H", size) + body


def feed_split(header: bytes, mode: str, tail: bytes = HTTP) -> proxy.ProxyHeader:
    """Every proper prefix of the header needs more data; the whole thing parses."""
    for i in range(len(header)):
        assert proxy.parse(header[:i], mode) is NEED_DATA, (i, header[:i])
    result = proxy.parse(header + tail, mode)
    assert isinstance(result, proxy.ProxyHeader)
    assert result.consumed == len(header)
    assert (header + tail)[result.consumed :] == tail
    return result


# -- v1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["v1", "auto"])
def test_v1_tcp4_every_split(mode):
    r = feed_split(b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n", mode)
    assert (r.src_addr, r.src_port, r.dst_addr, r.dst_port) == ("1.2.3.4", 1111, "5.6.7.8", 80)
    assert not r.local and r.version == 1


def test_v1_tcp6_normalised():
    r = feed_split(b"PROXY TCP6 2001:DB8:0:0::1 ::1 65535 0\r\n", "auto")
    assert (r.src_addr, r.src_port, r.dst_addr, r.dst_port) == ("2001:db8::1", 65535, "::1", 0)


@pytest.mark.parametrize(
    "line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", b"PROXY UNKNOWN junk\r\n"]
)
def test_v1_unknown_is_local(line):
    r = feed_split(line, "v1")
    assert r.local and r.src_addr == "" and r.src_port == 0


def test_v1_longest_allowed_line():
    addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {addr} {addr} 65535 65535\r\n".encode()
    assert len(line) == 104
    feed_split(line, "v1")
    unknown = b"PROXY UNKNOWN " + b"x" * (proxy.MAX_V1_LENGTH - 16) + b"\r\n"
    assert len(unknown) == proxy.MAX_V1_LENGTH
    assert feed_split(unknown, "v1").local


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY UNKNOWN " + b"x" * 200,  # no CRLF within 107 bytes
        b"PROXY UNKNOWN " + b"x" * (proxy.MAX_V1_LENGTH - 15) + b"\r\n",  # 108 bytes
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\n",  # bare LF
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\rX",  # CR not followed by LF
        b"PROXY TCP4 1.2.3.4\r5.6.7.8 1111 80\r\n",  # stray CR
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1111 80\r\n",  # family
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1111 80\r\n",  # family is case-sensitive
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1111 80\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n",  # too few fields
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80 9\r\n",  # too many
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1111 80\r\n",  # double space
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80 \r\n",  # trailing space
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1111 80\r\n",  # bad octet
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1111 80\r\n",  # leading zero octet
        b"PROXY TCP4 ::1 5.6.7.8 1111 80\r\n",  # family mismatch
        b"PROXY TCP6 1.2.3.4 ::1 1111 80\r\n",
        b"PROXY TCP6 fe80::1%eth0 ::1 1111 80\r\n",  # zone id
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01111 80\r\n",  # leading zero port
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1111 80\r\n",  # sign
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n",  # range
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 999999\r\n",  # too many digits
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1_111 80\r\n",  # int() would accept this
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 80\r\n",  # non-ASCII digit
        b"PROXY TCP4 1.2.3.4 5.6.7.8  80\r\n",  # empty port
        b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1111 80\r\n",  # non-ASCII address
    ],
)
def test_v1_malformed(data):
    with pytest.raises(errors.InvalidProxyHeader) as info:
        proxy.parse(data, "auto")
    assert "\n" not in str(info.value)


# -- v2 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["v2", "auto"])
def test_v2_tcp4_every_split(mode):
    r = feed_split(v2(), mode)
    assert (r.src_addr, r.src_port, r.dst_addr, r.dst_port) == ("1.2.3.4", 1111, "5.6.7.8", 80)
    assert not r.local and r.version == 2


def test_v2_tcp6_with_tlvs_every_split():
    src = bytes(range(16))
    dst = bytes(15) + b"\x01"
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00"  # ALPN, then an empty NOOP
    r = feed_split(v2(fam=0x21, body=src + dst + struct.pack(">HH", 443, 8443) + tlvs), "auto")
    assert r.src_addr == "1:203:405:607:809:a0b:c0d:e0f"
    assert (r.dst_addr, r.src_port, r.dst_port) == ("::1", 443, 8443)


@pytest.mark.parametrize(
    "header",
    [
        v2(command=0, fam=0x00, body=b""),  # LOCAL, no addresses (health check)
        v2(command=0, fam=0x11),  # LOCAL with an address block: ignored
        v2(command=0, fam=0x31, body=b"\x00" * 216),  # LOCAL, AF_UNIX block: ignored
        v2(command=1, fam=0x00, body=b"anything"),  # PROXY UNSPEC
    ],
)
def test_v2_local_and_unspec_keep_the_peer(header):
    r = feed_split(header, "v2")
    assert r.local and r.src_addr == ""


@pytest.mark.parametrize(
    "data",
    [
        v2(version=1),
        v2(version=3),
        v2(command=2),
        v2(command=0xF),
        v2(fam=0x12),  # UDP over IPv4
        v2(fam=0x22),
        v2(fam=0x31, body=b"\x00" * 216),  # AF_UNIX
        v2(fam=0x41),
        v2(fam=0x10),  # INET with UNSPEC transport
        v2(fam=0x11, body=b"\x01" * 11),  # too short for IPv4
        v2(fam=0x21, body=b"\x01" * 35),  # too short for IPv6
        v2(body=b"", length=proxy.MAX_V2_LENGTH + 1),  # over the cap, refused at once
        v2(body=b"", length=0xFFFF),
        v2(body=bytes(12) + b"\x04\x00"),  # truncated TLV header
        v2(body=bytes(12) + b"\x04\x00\x05abc"),  # TLV longer than the header
    ],
)
def test_v2_malformed(data):
    with pytest.raises(errors.InvalidProxyHeader) as info:
        proxy.parse(data, "auto")
    assert "\n" not in str(info.value)


def test_v2_length_cap_needs_no_body():
    # a huge length is refused on the 16 header bytes, not after buffering 64 KiB
    head = v2(body=b"", length=proxy.MAX_V2_LENGTH + 1)
    assert len(head) == 16
    with pytest.raises(errors.InvalidProxyHeader):
        proxy.parse(head, "v2")
    assert proxy.parse(v2(body=b"", length=proxy.MAX_V2_LENGTH), "v2") is NEED_DATA


# -- detection and modes ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["v1", "v2", "auto"])
def test_plain_http_is_not_a_header(mode):
    assert proxy.parse(b"", mode) is NEED_DATA
    assert proxy.parse(HTTP, mode) is None
    assert proxy.parse(b"G", mode) is None


def test_prefixes_wait_for_more_only_where_the_mode_allows():
    assert proxy.parse(b"PROX", "v1") is NEED_DATA
    assert proxy.parse(b"PROX", "auto") is NEED_DATA
    assert proxy.parse(b"PROX", "v2") is None
    assert proxy.parse(b"\r\n\r\n", "v2") is NEED_DATA
    assert proxy.parse(b"\r\n\r\n", "auto") is NEED_DATA
    assert proxy.parse(b"\r\n\r\n", "v1") is None
    assert proxy.parse(b"PROXX", "auto") is None
    assert proxy.parse(b"\r\n\r\n\x00\r\nQUIT!", "auto") is None


def test_other_version_is_not_parsed_in_a_single_version_mode():
    assert proxy.parse(v2() + HTTP, "v1") is None
    assert proxy.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v2") is None


def test_unknown_mode_is_a_programming_error():
    with pytest.raises(ValueError):
        proxy.parse(b"PROXY ", "v3")


def test_accepts_bytearray_and_memoryview():
    line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n"
    assert proxy.parse(bytearray(line), "v1").src_port == 1111  # type: ignore[union-attr]
    assert proxy.parse(memoryview(v2()), "v2").src_port == 1111  # type: ignore[union-attr]


def test_proxy_module_is_sans_io():
    source = Path(proxy.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "os", "select", "ssl", "selectors", "asyncio", "time"}
