"""Property tests for the parser: arbitrary and mutated input, in arbitrary chunkings.

Properties, for every input:
- the parser raises nothing but ``errors.HTTPError`` (anything else is a crash);
- it never spins: ``corpus.replay`` bounds the number of events per input byte;
- it is split-invariant: the normalised event sequence (heads, merged body bytes, trailers,
  EOF, error class and code) is the same whole, at random cut points and byte by byte.

Inputs are random bytes, a "token soup" of HTTP fragments (far likelier to get past the
request line than random bytes), random chunked bodies behind a valid head, and corpus
requests with byte-level mutations (flips, CR/LF/NUL/SP/obs-text insertions, deletions,
truncations, duplicated lines), under random ``Limits``. Hypothesis is derandomized and has
no example database, so every run tries the same inputs and leaves no files behind.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "requests"))
import corpus

SMALL_CASES = [c for c in corpus.load() if len(c.data) < 700]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INTERESTING = [b"\r", b"\n", b"\r\n", b"\0", b" ", b"\t", b"\x0b", b"\x7f", b":", b";", b","]
INTERESTING += [bytes([b]) for b in (0x80, 0x85, 0xA0, 0xB2, 0xFF)]
OBS_TEXT = st.integers(min_value=0x80, max_value=0xFF).map(lambda b: bytes([b]))

TOKENS = [
    b"GET",
    b"POST",
    b"CONNECT",
    b"OPTIONS",
    b"get",
    b" ",
    b"  ",
    b"\t",
    b"/",
    b"/p?q=1#f",
    b"*",
    b"http://a/x",
    b"a:80",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/1.10",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"Host: a",
    b"Host:",
    b"Content-Length: 3",
    b"Content-Length: +1",
    b"Content-Length: 0",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: ,chunked",
    b"Connection: close",
    b"Expect: 100-continue",
    b"X_A: 1",
    b"X-A: b",
    b" folded",
    b":",
    b"0",
    b"5",
    b"ffffffffffffffffff",
    b";a=b",
    b';a="q\\"x"',
    b"hello",
    b"abc",
    b"X-T: 1",
    b"\xa0",
    b"\x85",
]

LIMITS = st.fixed_dictionaries(
    {},
    optional={
        "max_line": st.sampled_from([0, 12, 40, 4094]),
        "max_fields": st.sampled_from([1, 3, 100]),
        "max_field_size": st.sampled_from([0, 10, 8190]),
        "header_map": st.sampled_from(["drop", "refuse", "dangerous"]),
        "permit_obsolete_folding": st.booleans(),
        "casefold_http_method": st.booleans(),
        "permit_unconventional_http_method": st.booleans(),
        "permit_unconventional_http_version": st.booleans(),
    },
)
CUTS = st.lists(st.integers(min_value=1, max_value=800), max_size=12)


def assert_split_invariant(
    data: bytes, cuts: list[int], eof: bool, limits: dict[str, Any] | None = None
) -> None:
    """Replay ``data`` whole, cut at ``cuts`` and byte by byte; all must agree."""
    whole = corpus.replay([data] if data else [], limits, eof)
    split = corpus.replay(corpus.split_at(data, cuts), limits, eof)
    bytewise = corpus.replay([data[i : i + 1] for i in range(len(data))], limits, eof)
    assert split.events == whole.events, f"split at {sorted(set(cuts))} differs from whole"
    assert bytewise.events == whole.events, "byte-by-byte differs from whole"


@FUZZ
@given(data=st.binary(max_size=400), cuts=CUTS, eof=st.booleans())
def test_random_bytes(data: bytes, cuts: list[int], eof: bool) -> None:
    assert_split_invariant(data, cuts, eof)


@FUZZ
@given(
    parts=st.lists(st.sampled_from(TOKENS), max_size=40),
    cuts=CUTS,
    eof=st.booleans(),
    limits=LIMITS,
)
def test_token_soup(parts: list[bytes], cuts: list[int], eof: bool, limits: dict[str, Any]) -> None:
    assert_split_invariant(b"".join(parts), cuts, eof, limits)


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNK_PARTS = [b"0", b"1", b"5", b"a", b"F", b"\r\n", b"\n", b"\r", b";", b"=", b'"', b"\\"]
CHUNK_PARTS += [b" ", b"\t", b"x", b"hello", b"X-T: 1", b"Host: b", b":", b"\0", b"\xa0"]


@FUZZ
@given(
    parts=st.lists(st.sampled_from(CHUNK_PARTS), max_size=60),
    cuts=CUTS,
    eof=st.booleans(),
)
def test_chunked_body_soup(parts: list[bytes], cuts: list[int], eof: bool) -> None:
    assert_split_invariant(CHUNKED_HEAD + b"".join(parts), cuts, eof)


@st.composite
def mutated_case(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A small corpus request with one to four byte-level mutations."""
    case = draw(st.sampled_from(SMALL_CASES))
    data = bytearray(case.data)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup_line"]))
        pos = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INTERESTING) | OBS_TEXT)
        elif op == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=4))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup_line":
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end + 1
            data[start:start] = data[start:end]
    limits = draw(st.one_of(st.just(case.limits), LIMITS))
    return bytes(data), limits


@FUZZ
@given(mutated=mutated_case(), cuts=CUTS, eof=st.booleans())
def test_mutated_corpus(mutated: tuple[bytes, dict[str, Any]], cuts: list[int], eof: bool) -> None:
    data, limits = mutated
    assert_split_invariant(data, cuts, eof, limits)


def test_fuzz_helpers_see_errors_and_requests() -> None:
    """Guard against a vacuous property: the driver does observe requests and errors."""
    ok = corpus.replay([b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], None, True)
    assert [e[0] for e in ok.events] == ["Request", "EndOfMessage", "EOF"]
    bad = corpus.replay([b"GET / HTTP/1.1\r\n\r\n"], None, False)
    assert bad.events == [("error", "MissingHost", 400)]
