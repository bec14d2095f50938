"""The sans-IO HTTP/2 session (http/http2/), frame by frame against an h2 client, no server:
requests become ``Request``s, bodies are credited as they are read, Content-Length is
checked per stream, GOAWAY lets streams finish, and the guard's bounds hold."""

from __future__ import annotations

import pytest

pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame, PingFrame, RstStreamFrame

from greenhorn.http.http2.guard import CONTROLS, Calm, FrameGuard
from greenhorn.http.http2.session import (
    ENHANCE_YOUR_CALM,
    PROTOCOL_ERROR,
    H2Config,
    Session,
)
from greenhorn.http.limits import Limits

REQ = [(":method", "POST"), (":scheme", "https"), (":authority", "a.example"), (":path", "/p?q=1")]


def pair(**kw: int) -> tuple[Session, h2.connection.H2Connection]:
    server = Session(H2Config(limits=Limits(), **kw))
    server.initiate()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.receive_data(server.output())
    assert server.receive(client.data_to_send(), 0.0) == []
    client.receive_data(server.output())  # SETTINGS ACK
    return server, client


def events(server: Session, client: h2.connection.H2Connection) -> list[object]:
    return client.receive_data(server.output())


def test_a_request_and_its_body_credited_as_read():
    server, client = pair(initial_window_size=65535)
    client.send_headers(1, [*REQ, ("content-length", "70000")])
    for start in range(0, 65535, 16384):
        client.send_data(1, b"x" * min(16384, 65535 - start))
    (stream,) = server.receive(client.data_to_send(), 0.0)
    req = stream.req
    assert (req.method, req.path, req.query, req.version) == ("POST", "/p", "q=1", (2, 0))
    assert req.host == "a.example" and ("HOST", "a.example") in req.headers
    assert stream.buffered == 65535
    # the client may not send more until the application reads
    assert client.local_flow_control_window(1) == 0
    assert server.read(stream) == b"x" * 65535
    events(server, client)
    assert client.streams[1].outbound_flow_control_window == 65535  # credited as read
    client.send_data(1, b"y" * 4465, end_stream=True)
    server.receive(client.data_to_send(), 0.0)
    assert server.read(stream) == b"y" * 4465 and server.read(stream) == b""


def test_content_length_mismatch_is_a_stream_error():
    server, client = pair()
    client.send_headers(1, [*REQ, ("content-length", "3")])
    client.send_data(1, b"12345", end_stream=True)
    client.send_headers(3, [*REQ, ("content-length", "5")])
    client.send_data(3, b"12345", end_stream=True)
    opened = server.receive(client.data_to_send(), 0.0)
    assert [s.sid for s in opened] == [3]  # stream 1 was reset in the same read
    resets = [e for e in events(server, client) if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(1, PROTOCOL_ERROR)]
    assert not server.closed and opened[0].ended


def test_goaway_lets_open_streams_finish_and_refuses_later_ones():
    server, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    (stream,) = server.receive(client.data_to_send(), 0.0)
    assert server.goaway() == 1
    client.send_headers(3, REQ, end_stream=True)
    assert server.receive(client.data_to_send(), 0.0) == []
    assert not server.done
    server.send_headers(stream, [(b":status", b"200")], end=True)
    server.finish(stream)
    assert server.done


def test_rapid_reset_ends_the_connection_with_enhance_your_calm():
    server, client = pair()
    for sid in range(1, 2001, 2):
        client.send_headers(sid, REQ, end_stream=True)
        client.reset_stream(sid)
    assert server.receive(client.data_to_send(), 0.0) == []  # none started
    assert server.closed
    terminated = [
        e for e in events(server, client) if isinstance(e, h2.events.ConnectionTerminated)
    ]
    assert terminated[0].error_code == ENHANCE_YOUR_CALM


def test_guard_bounds_a_header_block_before_its_payload_arrives():
    guard = FrameGuard(max_block=65536, preface=False)
    head = HeadersFrame(1, data=b"\x82" * 16000).serialize()  # no END_HEADERS
    cont = ContinuationFrame(1, data=b"\x82" * 16000).serialize()
    guard.scan(head + cont * 3, 0.0)  # 64000 bytes: still under the bound
    with pytest.raises(Calm):
        guard.scan(cont[:9], 0.0)  # the next frame's header alone is refused


def test_guard_control_bucket_refills_with_time():
    guard = FrameGuard(max_block=65536, preface=False)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    guard.scan(ping * CONTROLS, 0.0)
    with pytest.raises(Calm):
        guard.scan(ping, 0.0)
    guard = FrameGuard(max_block=65536, preface=False)
    guard.scan(ping * CONTROLS, 0.0)
    guard.scan(ping * 50, 1.0)  # a second later: 100 more allowed


def test_response_encoder_round_trips_through_a_decoder():
    from hpack import Decoder

    from greenhorn.http.http2.hpack_out import ResponseEncoder

    enc, dec = ResponseEncoder(), Decoder()
    fields = [
        (b":status", b"200"),  # indexed, whole
        (b":status", b"299"),  # indexed name
        (b"content-type", b"text/plain"),
        (b"x-long", b"v" * 300),  # a new name; lengths past the 7-bit prefix
        (b"www-authenticate", b"Basic"),  # a static name past the 4-bit prefix
    ]
    for _ in range(2):  # the second time from the cache
        assert dec.decode(enc.encode(fields), raw=True) == fields
    enc.header_table_size = 256  # the peer's SETTINGS_HEADER_TABLE_SIZE changed
    block = enc.encode(fields[:1])
    assert block[:1] == b"\x3f" and dec.decode(block, raw=True) == fields[:1]  # update first
    assert enc.encode(fields[:1]) == b"\x88"  # once only


def test_streams_past_the_limit_are_refused_then_a_flood_of_them_ends_the_connection():
    from hpack import Encoder

    server, client = pair(max_concurrent_streams=2)
    enc = Encoder()
    raw = [(k.encode(), v.encode()) for k, v in REQ]

    def headers(sid: int) -> bytes:
        frame = HeadersFrame(sid, data=enc.encode(raw))
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        return frame.serialize()

    opened = server.receive(b"".join(headers(sid) for sid in (1, 3, 5)), 0.0)
    assert [s.sid for s in opened] == [1, 3]
    out = server.output()
    frames = []
    while out:
        frame, length = Frame.parse_frame_header(memoryview(out[:9]))
        frame.parse_body(memoryview(out[9 : 9 + length]))
        frames.append(frame)
        out = out[9 + length :]
    resets = [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]
    assert resets == [(5, 0x7)]  # REFUSED_STREAM, a stream error
    assert not server.closed
    server.receive(b"".join(headers(sid) for sid in range(7, 7 + 2 * 400, 2)), 0.0)
    assert server.closed  # past the bound: ENHANCE_YOUR_CALM
