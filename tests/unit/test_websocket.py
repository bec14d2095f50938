"""greenhorn.http.websocket: the RFC 6455 handshake, frame reading in every chunking, each
protocol error with its close code, the writer, permessage-deflate, and wsproto as a second
opinion on the same bytes."""

from __future__ import annotations

import base64
import itertools
import operator
import os
import random
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenhorn.http import websocket as ws
from greenhorn.http.parser import Parser, Request
from greenhorn.http.response import InvalidResponse

MASK = b"\x12\x34\x56\x78"


# -- a client-side encoder (the test's own, independent of the module) -------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length_form: int | None = None,
) -> bytes:
    """One client frame. ``length_form`` forces the 7/16/64-bit length encoding (7, 16, 64),
    even a non-minimal one; ``mask=None`` sends it unmasked."""
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    maskbit = 0x80 if mask is not None else 0
    if form == 7:
        head = bytes((first, maskbit | n))
    elif form == 16:
        head = bytes((first, maskbit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, maskbit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(map(operator.xor, payload, itertools.cycle(mask)))


def text(s: str, **kw: object) -> bytes:
    return frame(0x1, s.encode(), **kw)  # type: ignore[arg-type]


def close_frame(code: int | None = None, reason: bytes = b"") -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return frame(0x8, payload)


def read_all(data: bytes, splits: list[int] | None = None, **kw: object) -> list[ws.Event]:
    """Feed ``data`` (in pieces cut at ``splits`` if given) and collect every event."""
    reader = ws.FrameReader(**kw)  # type: ignore[arg-type]
    events: list[ws.Event] = []
    cuts = [0, *(splits or []), len(data)]
    for a, b in itertools.pairwise(cuts):
        if b > a:  # an empty piece would mean end of stream
            reader.feed(data[a:b])
            events += reader.events()
    return events


def error_of(data: bytes, **kw: object) -> ws.WebSocketError:
    with pytest.raises(ws.WebSocketError) as info:
        read_all(data, **kw)
    return info.value


def parse_server_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """The writer's frames as (first byte, length, payload); asserts they are unmasked."""
    out = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "server frames are never masked"
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos : pos + 2], "big")
            assert n >= 126
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos : pos + 8], "big")
            assert n >= 65536
            pos += 8
        out.append((b0, n, data[pos : pos + n]))
        pos += n
    return out


def remask(server_bytes: bytes, rng: random.Random) -> bytes:
    """Turn the writer's frames into what a client would send: each frame masked."""
    out = b""
    for b0, _n, payload in parse_server_frames(server_bytes):
        mask = bytes(rng.randrange(256) for _ in range(4))
        out += frame(b0 & 0x0F, payload, fin=bool(b0 & 0x80), rsv=(b0 >> 4) & 0x7, mask=mask)
    return out


# -- handshake -------------------------------------------------------------------------------

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def request(
    extra: str = "", *, method: str = "GET", version: str = "1.1", key: str = RFC_KEY
) -> Request:
    head = (
        f"{method} /chat HTTP/{version}\r\nHost: server.example.com\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        + (f"Sec-WebSocket-Key: {key}\r\n" if key else "")
        + "Origin: http://example.com\r\n"
        + extra
        + "\r\n"
    )
    req = Parser().receive(head.encode("latin-1"))
    assert isinstance(req, Request)
    return req


V13 = "Sec-WebSocket-Version: 13\r\n"


def test_handshake_rfc_example():
    hs = ws.handshake(request(V13 + "Sec-WebSocket-Protocol: chat, superchat\r\n"))
    assert hs.accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # the RFC's answer
    assert hs.subprotocols == ("chat", "superchat")
    assert hs.origin == "http://example.com"
    assert hs.extensions == ()


@pytest.mark.parametrize(
    "head, expected",
    [
        ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", True),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, UPGRADE\r\n\r\n",
            True,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c, websocket\r\nConnection: upgrade\r\n\r\n",
            True,
        ),
        ("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", False),
        ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", False),
        ("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n", False),
        ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", False),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),
    ],
)
def test_is_websocket_upgrade(head, expected):
    req = Parser().receive(head.encode())
    assert isinstance(req, Request)
    assert ws.is_websocket_upgrade(req) is expected


@pytest.mark.parametrize(
    "req, message",
    [
        (lambda: request(V13, method="POST"), "method"),
        (lambda: request(V13, key=""), "Sec-WebSocket-Key"),
        (lambda: request(V13 + f"Sec-WebSocket-Key: {RFC_KEY}\r\n"), "Sec-WebSocket-Key"),
        (lambda: request(V13, key="dGhlIHNhbXBsZSBub25jZQ"), "invalid Sec-WebSocket-Key"),
        (lambda: request(V13, key="dGhlIHNhbXBsZSBub25jZQ=!"), "invalid Sec-WebSocket-Key"),
        (lambda: request(V13, key=base64.b64encode(b"x" * 15).decode()), "invalid"),
        (lambda: request(V13, key=base64.b64encode(b"x" * 17).decode()), "invalid"),
        (lambda: request(V13 + "Sec-WebSocket-Protocol: chat, a b\r\n"), "subprotocol"),
        (lambda: request(V13 + "Sec-WebSocket-Extensions: a b\r\n"), "extension"),
        (lambda: request(V13 + 'Sec-WebSocket-Extensions: x; y="a b"\r\n'), "parameter"),
        (lambda: request(V13 + 'Sec-WebSocket-Extensions: x; y="open\r\n'), "quoted"),
        (lambda: request(V13 + "Sec-WebSocket-Extensions: x; =1\r\n"), "parameter"),
    ],
)
def test_handshake_refusals_400(req, message):
    with pytest.raises(ws.HandshakeError) as info:
        ws.handshake(req())
    assert info.value.code == 400
    assert message in str(info.value)


def test_handshake_refuses_http10_and_missing_tokens():
    req = request(V13)
    req.version = (1, 0)
    with pytest.raises(ws.HandshakeError, match=r"HTTP/1\.1"):
        ws.handshake(req)
    req = request(V13)
    req.headers = [(n, v) for n, v in req.headers if n != "CONNECTION"]
    with pytest.raises(ws.HandshakeError, match="Connection"):
        ws.handshake(req)
    req = request(V13)
    req.headers = [(n, v) for n, v in req.headers if n != "UPGRADE"]
    with pytest.raises(ws.HandshakeError, match="Upgrade"):
        ws.handshake(req)


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "Sec-WebSocket-Version: 8\r\n",
        V13 + "Sec-WebSocket-Version: 8\r\n",
        "Sec-WebSocket-Version: 13, 8\r\n",
    ],
)
def test_handshake_version_426(extra):
    with pytest.raises(ws.UnsupportedWebSocketVersion) as info:
        ws.handshake(request(extra))
    exc = info.value
    assert exc.code == 426 and exc.reason == "Upgrade Required"
    answer = ws.rejection_response(exc, "greenhorn")
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 426 Upgrade Required"
    assert b"Sec-WebSocket-Version: 13" in lines
    assert b"Connection: close" in lines
    assert f"Content-Length: {len(body)}".encode() in lines


def test_extension_offers_parsed():
    hs = ws.handshake(
        request(
            V13 + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
            'x-webkit-deflate-frame\r\nSec-WebSocket-Extensions: foo; bar="baz"; Q = 1\r\n'
        )
    )
    assert hs.extensions == (
        ws.Extension("permessage-deflate", (("client_max_window_bits", None),)),
        ws.Extension("x-webkit-deflate-frame"),
        ws.Extension("foo", (("bar", "baz"), ("q", "1"))),
    )


def test_accept_response_head():
    hs = ws.handshake(request(V13 + "Sec-WebSocket-Protocol: chat, superchat\r\n"))
    head = ws.accept_response(hs, "superchat", [("X-Token", "abc"), ("Connection", "x")])
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: superchat\r\nX-Token: abc\r\n\r\n"
    )
    with_server = ws.accept_response(hs, server="greenhorn")
    assert b"\r\nServer: greenhorn\r\n" in with_server and b"\r\nDate: " in with_server
    own = ws.accept_response(hs, headers=[("Server", "app")], server="greenhorn")
    assert b"Server: app\r\n" in own and b"greenhorn" not in own


@pytest.mark.parametrize(
    "subprotocol, headers",
    [
        ("other", []),  # not offered
        (None, [("X-A", "a\r\nSet-Cookie: x")]),
        (None, [("X A", "1")]),
        (None, [("Sec-WebSocket-Accept", "forged")]),
        (None, [("Sec-WebSocket-Protocol", "chat")]),
        (None, [("Content-Length", "0")]),
        (None, [("X-A", "\u20ac")]),
        (None, [("X-A",)]),
        (None, [(b"X-A", b"1")]),
    ],
)
def test_accept_response_refuses_bad_app_input(subprotocol, headers):
    hs = ws.handshake(request(V13 + "Sec-WebSocket-Protocol: chat\r\n"))
    with pytest.raises(InvalidResponse):
        ws.accept_response(hs, subprotocol, headers)


def test_wsproto_client_accepts_our_101():
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection
    from wsproto.events import Request as WRequest
    from wsproto.events import TextMessage as WText
    from wsproto.extensions import PerMessageDeflate as WDeflate

    client = WSConnection(ConnectionType.CLIENT)
    data = client.send(
        WRequest(host="x", target="/", subprotocols=["a", "b"], extensions=[WDeflate()])
    )
    req = Parser().receive(data)
    assert isinstance(req, Request) and ws.is_websocket_upgrade(req)
    hs = ws.handshake(req)
    deflate = ws.negotiate_deflate(hs.extensions)
    assert deflate is not None
    client.receive_data(ws.accept_response(hs, "b", [("X-A", "1")], deflate))
    (accepted,) = list(client.events())
    assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "b"
    assert accepted.extensions and (b"x-a", b"1") in accepted.extra_headers
    # and messages flow both ways, compressed
    reader, writer = ws.FrameReader(deflate=deflate), ws.FrameWriter(deflate)
    reader.feed(client.send(WText("hi " * 100)))
    assert reader.events() == [ws.TextMessage("hi " * 100)]
    client.receive_data(writer.text("yo " * 100))
    (got,) = list(client.events())
    assert got.data == "yo " * 100


# -- reading: messages and lengths -----------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_lengths_every_encoding(n):
    payload = os.urandom(n)
    assert read_all(frame(0x2, payload)) == [ws.BytesMessage(payload)]
    assert read_all(text("é" * (n // 2))) == [ws.TextMessage("é" * (n // 2))]


def test_length_encodings_are_minimal():
    assert error_of(frame(0x2, b"x" * 125, length_form=16)).code == 1002
    assert error_of(frame(0x2, b"x" * 65535, length_form=64)).code == 1002
    msb = bytes((0x82, 0xFF)) + (1 << 63 | 70000).to_bytes(8, "big") + MASK
    exc = error_of(msb)
    assert exc.code == 1002 and "most significant" in str(exc)


def test_unmasked_client_frame_is_1002():
    exc = error_of(frame(0x1, b"hi", mask=None))
    assert exc.code == 1002 and "unmasked" in str(exc)
    assert isinstance(exc, ws.ProtocolError)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_1002(opcode):
    assert error_of(frame(opcode, b"x")).code == 1002


@pytest.mark.parametrize("rsv", [1, 2, 4, 3, 7])
def test_reserved_bits_without_extension_are_1002(rsv):
    exc = error_of(frame(0x1, b"x", rsv=rsv))
    assert exc.code == 1002 and "reserved bits" in str(exc)


def test_control_frame_rules():
    assert read_all(frame(0x9, b"p" * 125)) == [ws.Ping(b"p" * 125)]
    assert read_all(frame(0xA, b"")) == [ws.Pong(b"")]
    assert "over 125" in str(error_of(frame(0x9, b"p" * 126)))
    assert "fragmented control" in str(error_of(frame(0x9, b"p", fin=False)))
    assert error_of(frame(0xA, b"p", fin=False)).code == 1002
    assert error_of(frame(0x8, b"", fin=False)).code == 1002


def test_fragmentation_and_interleaved_control():
    data = (
        text("Hel", fin=False)
        + frame(0x9, b"ping")
        + frame(0x0, b"lo, ", fin=False)
        + frame(0xA, b"pong")
        + frame(0x0, b"world")
        + frame(0x2, b"\x00\x01", fin=False)
        + frame(0x0, b"", fin=False)
        + frame(0x0, b"\x02")
    )
    assert read_all(data) == [
        ws.Ping(b"ping"),
        ws.Pong(b"pong"),
        ws.TextMessage("Hello, world"),
        ws.BytesMessage(b"\x00\x01\x02"),
    ]


def test_fragmentation_errors():
    exc = error_of(frame(0x0, b"x"))
    assert exc.code == 1002 and "continuation" in str(exc)
    exc = error_of(text("a", fin=False) + text("b"))
    assert exc.code == 1002 and "inside a fragmented" in str(exc)
    exc = error_of(text("a", fin=False) + frame(0x2, b"b"))
    assert exc.code == 1002
    # a complete message resets the state: a continuation after it is an error again
    assert error_of(text("a", fin=False) + frame(0x0, b"b") + frame(0x0, b"c")).code == 1002


def test_utf8_checked_across_fragments():
    euro = "€".encode()  # three bytes, split over three frames
    data = text("", fin=False) + frame(0x0, euro[:1], fin=False) + frame(0x0, euro[1:2], fin=False)
    assert read_all(data + frame(0x0, euro[2:])) == [ws.TextMessage("€")]
    # an invalid byte fails at its own fragment, before the message ends (fail fast)
    reader = ws.FrameReader()
    reader.feed(text("ok", fin=False))
    assert reader.events() == []
    reader.feed(frame(0x0, b"\xff", fin=False))
    with pytest.raises(ws.InvalidPayload) as info:
        reader.next_event()
    assert info.value.code == 1007
    # a sequence cut off by the end of the message
    assert error_of(data + frame(0x0, b"")).code == 1007
    assert error_of(frame(0x1, b"\xc3")).code == 1007
    assert error_of(frame(0x1, b"\xed\xa0\x80")).code == 1007  # a surrogate, encoded
    # binary messages are not checked
    assert read_all(frame(0x2, b"\xff")) == [ws.BytesMessage(b"\xff")]


@pytest.mark.parametrize(
    "code",
    [
        1000,
        1001,
        1002,
        1003,
        1007,
        1008,
        1009,
        1010,
        1011,
        1012,
        1013,
        1014,
        3000,
        3999,
        4000,
        4999,
    ],
)
def test_close_valid_codes(code):
    assert read_all(close_frame(code, "bye ✓".encode())) == [ws.Close(code, "bye ✓")]


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_close_invalid_codes_are_1002(code):
    exc = error_of(close_frame(code))
    assert exc.code == 1002 and "close code" in str(exc)


def test_close_payload_rules():
    assert read_all(close_frame()) == [ws.Close(1005, "")]
    assert error_of(frame(0x8, b"\x03")).code == 1002
    assert error_of(close_frame(1000, b"\xff")).code == 1007
    # nothing is read after a Close frame
    reader = ws.FrameReader()
    reader.feed(close_frame(1000) + b"\x00garbage that is not a frame")
    assert not reader.closed
    assert reader.events() == [ws.Close(1000, "")]
    assert reader.closed
    reader.feed(frame(0x1, b"late"))
    assert reader.next_event() is None and reader.buffered == 0


def test_eof_is_close_1006():
    assert read_all(text("a") + b"") == [ws.TextMessage("a")]
    reader = ws.FrameReader()
    reader.feed(text("a") + text("partial")[:5])
    reader.feed(b"")
    assert reader.events() == [ws.TextMessage("a"), ws.Close(1006, "")]
    assert reader.next_event() is None
    reader = ws.FrameReader()
    reader.feed(b"")
    assert reader.events() == [ws.Close(1006, "")]


def test_errors_are_final():
    reader = ws.FrameReader()
    reader.feed(frame(0x1, b"x", mask=None))
    with pytest.raises(ws.ProtocolError):
        reader.next_event()
    reader.feed(text("valid"))
    with pytest.raises(ws.ProtocolError):
        reader.next_event()
    assert reader.buffered == 0


# -- reading: the size limit -----------------------------------------------------------------


def test_max_message_size_checked_from_the_header():
    """1009 as soon as the header declares too much: the payload is never waited for."""
    reader = ws.FrameReader(max_message_size=1000)
    big = frame(0x2, b"x" * 1001)
    reader.feed(big[:8])  # the header and the mask only
    with pytest.raises(ws.MessageTooBig) as info:
        reader.next_event()
    assert info.value.code == 1009
    # a 64-bit length close to 2**63 fails the same way, with nothing buffered
    reader = ws.FrameReader(max_message_size=1000)
    reader.feed(bytes((0x82, 0xFF)) + ((1 << 62) + 5).to_bytes(8, "big") + MASK)
    with pytest.raises(ws.MessageTooBig):
        reader.next_event()


def test_max_message_size_counts_fragments():
    assert read_all(frame(0x2, b"x" * 1000), max_message_size=1000) == [
        ws.BytesMessage(b"x" * 1000)
    ]
    data = frame(0x2, b"x" * 600, fin=False) + frame(0x0, b"y" * 401)
    reader = ws.FrameReader(max_message_size=1000)
    reader.feed(data[: 6 + 600 + 6])  # the second fragment's header only
    with pytest.raises(ws.MessageTooBig):
        reader.next_event()
    ok = frame(0x2, b"x" * 600, fin=False) + frame(0x0, b"y" * 400) + frame(0x2, b"z" * 1000)
    events = read_all(ok, max_message_size=1000)
    assert events == [ws.BytesMessage(b"x" * 600 + b"y" * 400), ws.BytesMessage(b"z" * 1000)]
    # control frames do not count
    assert read_all(
        text("a" * 10, fin=False) + frame(0x9, b"p" * 125) + frame(0x0, b"b"), max_message_size=11
    )[1] == ws.TextMessage("a" * 10 + "b")


def test_max_message_size_zero_means_unlimited():
    payload = b"x" * (1 << 17)
    assert read_all(frame(0x2, payload), max_message_size=0) == [ws.BytesMessage(payload)]


# -- reading: chunkings ------------------------------------------------------------------------

STREAM = (
    text("hello")
    + frame(0x2, os.urandom(300))
    + text("frag-", fin=False)
    + frame(0x9, b"in between")
    + frame(0x0, "ment ✓".encode())
    + frame(0x2, bytes(range(256)) * 300)
    + frame(0xA, b"")
    + text("é" * 40000)
    + close_frame(1001, b"going")
)


def test_byte_by_byte_equals_one_piece():
    whole = read_all(STREAM)
    assert len(whole) == 8 and whole[-1] == ws.Close(1001, "going")
    assert read_all(STREAM, splits=list(range(1, len(STREAM)))) == whole


def test_random_splits_equal_one_piece():
    whole = read_all(STREAM)
    rng = random.Random(6455)
    for _ in range(50):
        splits = sorted(rng.sample(range(1, len(STREAM)), rng.randrange(1, 40)))
        assert read_all(STREAM, splits=splits) == whole


@pytest.mark.parametrize(
    "bad, code",
    [
        (text("ok") + frame(0x1, b"x", mask=None), 1002),
        (text("ok") + text("a", fin=False) + text("b"), 1002),
        (text("ok") + frame(0x1, b"ok\xffok"), 1007),
        (text("ok") + frame(0x2, b"x" * 2000), 1009),
        (text("ok") + frame(0x9, b"x" * 200), 1002),
    ],
)
def test_errors_the_same_in_every_chunking(bad, code):
    rng = random.Random(7)
    for splits in [None, list(range(1, len(bad)))] + [
        sorted(rng.sample(range(1, len(bad)), 3)) for _ in range(10)
    ]:
        reader = ws.FrameReader(max_message_size=1000)
        cuts = [0, *(splits or []), len(bad)]
        events = []
        with pytest.raises(ws.WebSocketError) as info:
            for a, b in itertools.pairwise(cuts):
                reader.feed(bad[a:b])
                while (event := reader.next_event()) is not None:
                    events.append(event)
        assert info.value.code == code
        assert events == [ws.TextMessage("ok")]


# -- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, header",
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f" + (65536).to_bytes(8, "big")),
    ],
)
def test_writer_lengths(n, header):
    payload = os.urandom(n)
    out = ws.FrameWriter().binary(payload)
    assert out == header + payload


def test_writer_text_and_control():
    w = ws.FrameWriter()
    assert w.text("hé") == b"\x81\x03h\xc3\xa9"
    assert w.ping(b"x") == b"\x89\x01x"
    assert w.pong() == b"\x8a\x00"
    assert w.close() == b"\x88\x02\x03\xe8"
    assert w.close(None) == b"\x88\x00"
    assert w.close(4000, "why") == b"\x88\x05\x0f\xa0why"
    long = w.close(1000, "é" * 100)  # cut at a character boundary: 61 characters fit
    assert parse_server_frames(long)[0][2][2:].decode() == "é" * 61
    for bad in (
        lambda: w.ping(b"x" * 126),
        lambda: w.close(1005),
        lambda: w.close(999),
        lambda: w.close(None, "r"),
    ):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(UnicodeEncodeError):
        w.text("\ud800")


def test_writer_fragments():
    w = ws.FrameWriter(fragment_size=4)
    frames = parse_server_frames(w.text("abcdefghij"))
    assert [(b0, payload) for b0, _, payload in frames] == [
        (0x01, b"abcd"),
        (0x00, b"efgh"),
        (0x80, b"ij"),
    ]
    assert parse_server_frames(w.binary(b"abcd")) == [(0x82, 4, b"abcd")]  # fits: one frame
    assert read_all(remask(w.text("abcdefghij"), random.Random(1))) == [
        ws.TextMessage("abcdefghij")
    ]


small_message = st.one_of(
    st.text(max_size=300).map(ws.TextMessage),
    st.binary(max_size=300).map(ws.BytesMessage),
)
big_message = st.binary(min_size=65536, max_size=66000).map(ws.BytesMessage)


@st.composite
def messages_and_fragment_size(draw: st.DrawFn) -> tuple[list[ws.Event], int]:
    """Messages, and the writer's fragment size: tiny fragments only for small messages
    (a 64 KiB message in 1-byte frames would only make the test slow)."""
    fragment_size = draw(st.sampled_from([0, 1, 7, 125, 126, 65536]))
    kinds = small_message if 0 < fragment_size < 126 else st.one_of(small_message, big_message)
    return draw(st.lists(kinds, max_size=6)), fragment_size


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    drawn=messages_and_fragment_size(),
    deflate=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_roundtrip_writer_to_reader(drawn, deflate, seed):
    """writer → frames masked as a client would → reader in random pieces: same messages.
    With deflate, the client's compressor is the server's writer on a mirrored session."""
    messages, fragment_size = drawn
    rng = random.Random(seed)
    server_deflate = client_deflate = None
    if deflate:
        offer = [ws.Extension("permessage-deflate")]
        client_deflate = ws.negotiate_deflate(offer)  # compresses as the client would
        server_deflate = ws.negotiate_deflate(offer)  # inflates on the server
    writer = ws.FrameWriter(client_deflate, fragment_size=fragment_size)
    wire = b""
    for m in messages:
        out = writer.text(m.data) if isinstance(m, ws.TextMessage) else writer.binary(m.data)
        wire += remask(out, rng)
    splits = (
        sorted(set(rng.sample(range(1, len(wire)), min(len(wire) - 1, 20))))
        if len(wire) > 1
        else []
    )
    assert read_all(wire, splits=splits, deflate=server_deflate) == messages


# -- permessage-deflate ----------------------------------------------------------------------


def offer(params: str) -> list[ws.Extension]:
    return ws.parse_extensions("permessage-deflate" + params)


@pytest.mark.parametrize(
    "params, answer",
    [
        ("", "permessage-deflate"),
        ("; client_max_window_bits", "permessage-deflate"),
        ("; client_max_window_bits=10", "permessage-deflate"),
        ("; server_no_context_takeover", "permessage-deflate; server_no_context_takeover"),
        ("; client_no_context_takeover", "permessage-deflate; client_no_context_takeover"),
        ("; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10"),
        ('; server_max_window_bits="15"', "permessage-deflate; server_max_window_bits=12"),
        ("; server_max_window_bits=8", None),  # zlib's raw deflate cannot make 8
        ("; server_max_window_bits", None),
        ("; server_max_window_bits=16", None),
        ("; server_max_window_bits=08", None),
        ("; client_max_window_bits=7", None),
        ("; server_no_context_takeover=1", None),
        ("; server_no_context_takeover; server_no_context_takeover", None),
        ("; unknown=1", None),
    ],
)
def test_deflate_negotiation(params, answer):
    result = ws.negotiate_deflate(offer(params))
    assert (result.response_value() if result else None) == answer


def test_deflate_first_acceptable_offer_wins():
    offers = ws.parse_extensions(
        "x-other, permessage-deflate; bogus, permessage-deflate; client_no_context_takeover, permessage-deflate"
    )
    result = ws.negotiate_deflate(offers)
    assert result is not None
    assert result.response_value() == "permessage-deflate; client_no_context_takeover"
    assert ws.negotiate_deflate(ws.parse_extensions("x-webkit-deflate-frame")) is None


def client_compressed(messages: list[bytes], takeover: bool = True) -> list[bytes]:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = []
    for m in messages:
        if not takeover:
            comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


@pytest.mark.parametrize("takeover", [True, False])
def test_deflate_reads_client_messages(takeover):
    messages = [b"hello hello hello", b"hello hello hello", b"", "é✓".encode() * 50]
    deflate = ws.negotiate_deflate(offer(""))
    wire = b"".join(frame(0x1, p, rsv=4) for p in client_compressed(messages, takeover))
    assert read_all(wire, deflate=deflate) == [ws.TextMessage(m.decode()) for m in messages]
    # uncompressed messages may be mixed in (RSV1 clear)
    deflate = ws.negotiate_deflate(offer(""))
    mixed = frame(0x2, b"plain") + frame(0x2, client_compressed([b"packed"])[0], rsv=4)
    assert read_all(mixed, deflate=deflate) == [
        ws.BytesMessage(b"plain"),
        ws.BytesMessage(b"packed"),
    ]


def test_deflate_fragmented_compressed_message():
    payload = client_compressed([b"abc" * 1000])[0]
    deflate = ws.negotiate_deflate(offer(""))
    wire = (
        frame(0x2, payload[:5], rsv=4, fin=False)
        + frame(0x0, payload[5:20], fin=False)
        + frame(0x0, payload[20:])
    )
    assert read_all(wire, deflate=deflate) == [ws.BytesMessage(b"abc" * 1000)]
    # RSV1 belongs on the first frame only
    deflate = ws.negotiate_deflate(offer(""))
    bad = frame(0x2, payload[:5], rsv=4, fin=False) + frame(0x0, payload[5:], rsv=4)
    assert error_of(bad, deflate=deflate).code == 1002
    assert error_of(frame(0x9, b"", rsv=4), deflate=ws.negotiate_deflate(offer(""))).code == 1002
    assert error_of(frame(0x1, b"x", rsv=2), deflate=ws.negotiate_deflate(offer(""))).code == 1002


def test_deflate_zip_bomb_is_1009():
    bomb = client_compressed([b"\x00" * (8 << 20)])[0]  # 8 MiB of zeros: about 8 KiB on the wire
    assert len(bomb) < 20000
    deflate = ws.negotiate_deflate(offer(""))
    exc = error_of(frame(0x2, bomb, rsv=4), deflate=deflate, max_message_size=1 << 20)
    assert exc.code == 1009 and "inflated" in str(exc)
    # the same bomb in fragments
    deflate = ws.negotiate_deflate(offer(""))
    wire = frame(0x2, bomb[:100], rsv=4, fin=False) + frame(0x0, bomb[100:])
    assert error_of(wire, deflate=deflate, max_message_size=1 << 20).code == 1009
    # exactly at the limit is fine
    deflate = ws.negotiate_deflate(offer(""))
    exact = client_compressed([b"\x00" * (1 << 20)])[0]
    events = read_all(frame(0x2, exact, rsv=4), deflate=deflate, max_message_size=1 << 20)
    assert events == [ws.BytesMessage(b"\x00" * (1 << 20))]


def test_deflate_invalid_data_is_1007():
    deflate = ws.negotiate_deflate(offer(""))
    exc = error_of(frame(0x2, b"\xff\xff\xff\xff", rsv=4), deflate=deflate)
    assert exc.code == 1007
    deflate = ws.negotiate_deflate(offer(""))
    assert (
        error_of(frame(0x1, client_compressed([b"\xff\xfe"])[0], rsv=4), deflate=deflate).code
        == 1007
    )


@pytest.mark.parametrize(
    "params", ["", "; server_no_context_takeover", "; server_max_window_bits=9"]
)
def test_deflate_writer_read_by_zlib_client(params):
    deflate = ws.negotiate_deflate(offer(params))
    assert deflate is not None
    writer = ws.FrameWriter(deflate)
    decomp = zlib.decompressobj(-15 if "window" not in params else -9)
    for message in [b"abcabcabc" * 50, b"abcabcabc" * 50, b""]:
        ((b0, _, payload),) = parse_server_frames(writer.binary(message))
        assert b0 == 0xC2  # FIN, RSV1, binary
        if "no_context" in params:
            decomp = zlib.decompressobj(-15)
        assert decomp.decompress(payload + b"\x00\x00\xff\xff") == message


def test_deflate_min_size_sends_small_messages_plain():
    deflate = ws.negotiate_deflate(offer(""), ws.DeflateOptions(min_size=100))
    writer = ws.FrameWriter(deflate)
    assert writer.text("short") == b"\x81\x05short"
    assert parse_server_frames(writer.text("x" * 100))[0][0] == 0xC1


# -- a second opinion: wsproto on the same bytes -----------------------------------------------


def wsproto_events(data: bytes) -> list[object]:
    """wsproto's server-side frame layer reading ``data``: whole messages, pings, pongs,
    close; or ("error", close code) where it fails."""
    from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

    proto = FrameProtocol(client=False, extensions=[])
    out: list[object] = []
    parts: list = []
    kind = None
    try:
        proto.receive_bytes(data)
        for fr in proto.received_frames():
            if fr.opcode is Opcode.PING:
                out.append(ws.Ping(bytes(fr.payload)))
            elif fr.opcode is Opcode.PONG:
                out.append(ws.Pong(bytes(fr.payload)))
            elif fr.opcode is Opcode.CLOSE:
                code, reason = fr.payload
                out.append(ws.Close(int(code), reason))
            else:
                kind = kind or fr.opcode
                parts.append(fr.payload)
                if fr.message_finished:
                    if kind is Opcode.TEXT:
                        out.append(ws.TextMessage("".join(parts)))
                    else:
                        out.append(ws.BytesMessage(b"".join(bytes(p) for p in parts)))
                    parts = []
                    kind = None
    except ParseFailed as exc:
        out.append(("error", int(exc.code)))
    return out


def our_events(data: bytes) -> list[object]:
    reader = ws.FrameReader(max_message_size=0)
    out: list[object] = []
    try:
        reader.feed(data)
        out += reader.events()
    except ws.WebSocketError as exc:
        out.append(("error", exc.code))
    return out


client_frame = st.one_of(
    st.builds(lambda s, fin: ("text", s, fin), st.text(max_size=200), st.booleans()),
    st.builds(lambda b, fin: ("binary", b, fin), st.binary(max_size=70000), st.booleans()),
    st.builds(lambda b: ("ping", b), st.binary(max_size=125)),
    st.builds(lambda b: ("pong", b), st.binary(max_size=125)),
)


def valid_stream(items: list[tuple]) -> bytes:
    """A valid client byte stream from the drawn items: a message's fragments continue with
    continuation frames, every message is finished, and a Close ends it."""
    out = b""
    open_kind = None
    for item in items:
        if item[0] in ("ping", "pong"):
            out += frame(0x9 if item[0] == "ping" else 0xA, item[1])
            continue
        kind, value, fin = item
        if open_kind is not None and kind != open_kind:
            out += frame(0x0, b"")  # finish the open message first
            open_kind = None
        payload = value.encode() if kind == "text" else value
        opcode = 0x0 if open_kind else (0x1 if kind == "text" else 0x2)
        out += frame(opcode, payload, fin=fin)
        open_kind = None if fin else kind
    if open_kind is not None:
        out += frame(0x0, b"")
    return out + close_frame(1000, b"done")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(client_frame, max_size=8))
def test_differential_wsproto_valid_streams(items):
    data = valid_stream(items)
    theirs = wsproto_events(data)
    assert not any(isinstance(e, tuple) for e in theirs), theirs
    assert our_events(data) == theirs


@pytest.mark.parametrize(
    "bad",
    [
        frame(0x1, b"x", mask=None),
        frame(0x3, b"x"),
        frame(0xB, b"x"),
        frame(0x1, b"x", rsv=4),
        frame(0x1, b"x", rsv=2),
        frame(0x9, b"x" * 126),
        frame(0x9, b"x", fin=False),
        frame(0x0, b"x"),
        text("a", fin=False) + text("b"),
        frame(0x1, b"\xff"),
        text("a", fin=False) + frame(0x0, b"\xc3"),
        frame(0x8, b"\x03"),
        close_frame(999),
        close_frame(1005),
        close_frame(2000),
        close_frame(1000, b"\xff"),
        frame(0x2, b"x" * 100, length_form=16),
        frame(0x2, b"x" * 1000, length_form=64),
    ],
)
def test_differential_wsproto_rejects_the_same(bad):
    ours = our_events(bad)
    theirs = wsproto_events(bad)
    assert ours[-1] == theirs[-1] and ours[-1][0] == "error"


def test_close_1014_accepted_where_wsproto_refuses():
    """1014 (Bad Gateway) is in the IANA registry; wsproto 1.x predates it. Documented."""
    assert our_events(close_frame(1014)) == [ws.Close(1014, "")]
