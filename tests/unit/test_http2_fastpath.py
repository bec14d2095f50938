"""The HTTP/2 session's cheaper paths, against the hpack library and an h2 client.

- ``hpack_in.CachingDecoder`` remembers header blocks: over any sequence of blocks an hpack
  encoder writes (dynamic table insertions, size updates, Huffman strings, never-indexed
  fields, blocks repeated byte for byte) it decodes what hpack's own decoder decodes, and
  bad input raises what hpack raises, as a COMPRESSION_ERROR for h2 (a connection error in
  the session, never a crash);
- ``machine.Connection`` writes the response's HEADERS (CONTINUATION past the frame size)
  and DATA frames itself, after h2's own state transitions: an h2 client reads interim
  responses, responses, bodies and trailers from them, and a stream h2 closed still refuses
  them; closed streams are forgotten as streams come and go.
"""

from __future__ import annotations

import pytest

pytest.importorskip("h2")

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from hpack import Decoder, Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import HeadersFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from greenhorn.http.http2.hpack_in import CachingDecoder, CompressionError
from greenhorn.http.http2.session import H2Config, Session, StreamGone
from greenhorn.http.limits import Limits

REQ = [(":method", "GET"), (":scheme", "http"), (":authority", "a.example"), (":path", "/")]

# -- the decoder ------------------------------------------------------------------------------

_names = st.sampled_from([b"x-a", b"x-b", b"accept", b"user-agent", b"cookie", b":path"])
_values = st.sampled_from([b"", b"1", b"/", b"text/html", b"a" * 40, b"\xff\x00 caf\xc3\xa9"])
_field = st.tuples(_names, _values, st.booleans())  # (name, value, never indexed)
_step = st.one_of(
    # a header list (encoded again, once its fields are in the table, it is the same bytes)
    st.tuples(st.just("block"), st.lists(_field, max_size=6), st.booleans()),  # huffman
    st.tuples(st.just("again"), st.none(), st.none()),  # the last block, byte for byte
    st.tuples(st.just("size"), st.integers(0, 4096), st.none()),  # a table size update
)


def _fields(spec: list[tuple[bytes, bytes, bool]]) -> list[HeaderTuple]:
    return [NeverIndexedHeaderTuple(n, v) if never else HeaderTuple(n, v) for n, v, never in spec]


def _ours(exc: HPACKError) -> type[Exception]:
    """What the caching decoder raises where hpack raised ``exc``."""
    return (
        OversizedHeaderListError if isinstance(exc, OversizedHeaderListError) else CompressionError
    )


def _same(ours: CachingDecoder, theirs: Decoder, block: bytes) -> bool:
    """Decode ``block`` with both: the same fields (never-indexed kept), or the same error
    (False: the connection would end there)."""
    try:
        want = theirs.decode(block, raw=True)
    except HPACKError as exc:
        with pytest.raises(_ours(exc)):
            ours.decode(block, raw=True)
        return False
    got = ours.decode(block, raw=True)
    assert list(got) == list(want)
    assert [type(h) for h in got] == [type(h) for h in want]
    return True


@settings(max_examples=150, deadline=None)
@given(st.lists(_step, min_size=1, max_size=25))
def test_caching_decoder_decodes_what_hpack_decodes(steps):
    enc, ours, theirs = Encoder(), CachingDecoder(), Decoder()
    last = None
    for kind, arg, huffman in steps:
        if kind == "size":
            enc.header_table_size = arg
            continue
        if kind == "again":
            if last is None:
                continue
            block = last  # the same bytes again: remembered only if the table is unchanged
        else:
            block = enc.encode(_fields(arg), huffman=huffman)
        last = block
        if not _same(ours, theirs, block):
            return


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=6))
def test_caching_decoder_fails_as_hpack_fails(blocks):
    ours, theirs = CachingDecoder(), Decoder()
    for block in [*blocks, *blocks]:  # each twice: remembered ones too
        try:
            want = theirs.decode(block, raw=True)
        except HPACKError as exc:
            with pytest.raises(_ours(exc)):
                ours.decode(block, raw=True)
            return  # the connection would end here
        assert list(ours.decode(block, raw=True)) == list(want)


def _index_62() -> bytes:
    return b"\x82\x86\xbe"  # :method GET, :scheme http, dynamic entry 62


def test_a_remembered_block_follows_the_dynamic_table():
    dec = CachingDecoder()
    dec.decode(b"\x44\x02/a", raw=True)  # literal with indexing: entry 62 = :path /a
    assert dec.decode(_index_62(), raw=True)[-1] == (b":path", b"/a")
    assert dec.decode(_index_62(), raw=True)[-1] == (b":path", b"/a")  # remembered
    dec.decode(b"\x44\x02/b", raw=True)  # entry 62 = :path /b now
    assert dec.decode(_index_62(), raw=True)[-1] == (b":path", b"/b")


def test_a_size_update_to_the_same_size_still_empties_the_table():
    dec = CachingDecoder()
    dec.decode(b"\x44\x02/a", raw=True)
    assert dec.decode(_index_62(), raw=True)[-1] == (b":path", b"/a")
    dec.decode(b"\x20\x3f\xe1\x1f\x82", raw=True)  # size 0, then 4096 again: table emptied
    with pytest.raises(CompressionError):
        dec.decode(_index_62(), raw=True)


def test_a_remembered_block_is_checked_again_under_a_smaller_header_list_limit():
    dec = CachingDecoder(max_header_list_size=1000)
    block = Encoder().encode([(b"x-big", b"v" * 200)])
    assert dec.decode(block, raw=True) == [(b"x-big", b"v" * 200)]
    dec.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        dec.decode(block, raw=True)


# -- the session, through an h2 client ------------------------------------------------------


def pair(**kw: int) -> tuple[Session, h2.connection.H2Connection]:
    server = Session(H2Config(limits=Limits(), **kw))
    server.initiate()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    client.receive_data(server.output())
    assert server.receive(client.data_to_send(), 0.0) == []
    client.receive_data(server.output())
    return server, client


def test_a_bad_header_block_is_a_connection_error():
    server, client = pair()
    frame = HeadersFrame(1)
    frame.data = b"\x82\x86\xff\xff\xff\xff\xff\x0f"  # an index far past both tables
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    assert server.receive(frame.serialize(), 0.0) == []
    assert server.closed
    (ended,) = [
        e
        for e in client.receive_data(server.output())
        if isinstance(e, h2.events.ConnectionTerminated)
    ]
    assert ended.error_code == h2.errors.ErrorCodes.COMPRESSION_ERROR  # RFC 9113 §4.3


def test_interim_final_body_and_trailers_reach_an_h2_client():
    server, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    (stream,) = server.receive(client.data_to_send(), 0.0)
    server.send_informational(stream, [(b":status", b"103"), (b"link", b"</s.css>")])
    server.send_headers(stream, [(b":status", b"200"), (b"x-long", b"v" * 40000)], False)
    assert server.send_data(stream, b"hello", False) == 5
    server.send_trailers(stream, [(b"x-sum", b"1")])
    got = client.receive_data(server.output())
    kinds = [type(e).__name__ for e in got]
    assert kinds == [
        "InformationalResponseReceived",
        "ResponseReceived",
        "DataReceived",
        "TrailersReceived",
        "StreamEnded",
    ]
    assert got[0].headers == [(b":status", b"103"), (b"link", b"</s.css>")]
    assert got[1].headers == [(b":status", b"200"), (b"x-long", b"v" * 40000)]  # CONTINUATION
    assert got[2].data == b"hello" and got[3].headers == [(b"x-sum", b"1")]
    assert server.h2.outbound_flow_control_window == 65535 - 5  # counted as h2 counts


def test_a_response_on_a_stream_the_client_reset_is_refused():
    server, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    (stream,) = server.receive(client.data_to_send(), 0.0)
    client.reset_stream(1)
    server.receive(client.data_to_send(), 0.0)
    with pytest.raises(StreamGone):
        server.send_headers(stream, [(b":status", b"200")], True)
    conn = server.h2
    with pytest.raises(h2.exceptions.StreamClosedError):
        conn.send_headers(1, [(b":status", b"200")], end_stream=True)
    client.send_headers(3, REQ, end_stream=True)
    (other,) = server.receive(client.data_to_send(), 0.0)
    with pytest.raises(h2.exceptions.ProtocolError):  # no END_STREAM on an interim response
        conn.send_headers(3, [(b":status", b"100")], end_stream=True)
    server.send_headers(other, [(b":status", b"204")], True)
    assert not server.closed


def test_data_past_the_window_is_h2s_error_and_a_window_wait():
    server, client = pair()
    client.send_headers(1, REQ, end_stream=True)
    (stream,) = server.receive(client.data_to_send(), 0.0)
    server.send_headers(stream, [(b":status", b"200")], False)
    with pytest.raises(h2.exceptions.FlowControlError):
        server.h2.send_data(1, b"x" * 70000)
    assert server.send_data(stream, b"x" * 70000, True) == 65535  # as far as the window goes
    assert stream in server.window_waiters and not stream.final_sent


def test_closed_streams_are_forgotten_as_streams_come_and_go():
    server, client = pair()
    seen = 0
    for sid in range(1, 2001, 2):
        client.send_headers(sid, REQ, end_stream=True)
        (stream,) = server.receive(client.data_to_send(), 0.0)
        server.send_headers(stream, [(b":status", b"200")], True)
        server.finish(stream)
        client.receive_data(server.output())
        seen = max(seen, len(server.h2.streams))
    assert seen <= 128


def test_what_a_connection_remembers_is_bounded():
    from greenhorn.http.http2 import hpack_in

    dec = CachingDecoder()
    dec.decode(b"\x40\x03x-a\x01v", raw=True)  # entry 62: x-a: v
    many = b"\xbe" * (hpack_in.CACHE_BLOCK_FIELDS + 1)  # one short block, 65 fields
    assert len(dec.decode(many, raw=True)) == hpack_in.CACHE_BLOCK_FIELDS + 1
    assert many not in dec._blocks
    for n in range(3 * hpack_in.CACHE_BLOCKS):
        dec.decode(b"\x82\x04\x02/" + bytes([48 + n % 75]), raw=True)  # :path literal
        assert len(dec._blocks) <= hpack_in.CACHE_BLOCKS
