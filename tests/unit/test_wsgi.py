"""The WSGI layer: the environ built from a parsed request, ``wsgi.input`` and file wrappers.

Requests are parsed from real bytes with ``Parser`` so the environ is tested against what the
worker will really hand over. ``Body`` is driven by a pull function that returns the body in
awkward pieces (a line split across pieces, many lines in one piece, one byte at a time) and
refuses to be called again after it signalled the end: the real puller would then block on a
socket that will never deliver.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable

import pytest

from greenhorn import SERVER_SOFTWARE
from greenhorn.config import Config
from greenhorn.http.parser import Limits, Parser, Request
from greenhorn.workers.connection import Connection
from greenhorn.wsgi.environ import (
    ConflictingSchemeHeaders,
    FileWrapper,
    base_environ,
    build_environ,
)
from greenhorn.wsgi.input import Body
from greenhorn.wsgi.trust import ProxyTrust

SOCK = object()  # stands in for the client socket: the environ must pass it through as is
PEP3333_CGI_KEYS = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
)
DEFAULT_SCHEME_HEADERS = dict(Config().secure_scheme_headers)


def parse(raw: bytes) -> Request:
    parser = Parser()
    parser.feed(raw)
    req = parser.next_event()
    assert isinstance(req, Request), req
    return req


def conn_info(addr: str = "10.1.2.3", port: str = "54321", scheme: str = "http") -> Connection:
    server = ("listener.example", "8000")
    return Connection(SOCK, (addr, int(port)), server, Limits(), 0.0, scheme)


def environ(
    raw: bytes,
    conn: Connection | None = None,
    trust: ProxyTrust | None = None,
    script_name: str | None = None,
    body: Body | None = None,
) -> dict:
    base = base_environ(multithread=False, errors=sys.stderr, script_name=script_name)
    return build_environ(base, parse(raw), conn or conn_info(), body or Body(None), trust)


def get(target: str = "/", *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


# -- the PEP 3333 keys --------------------------------------------------------------------


def test_every_pep3333_key_is_present_with_native_str_values():
    errors = io.StringIO()
    base = base_environ(multithread=True, errors=errors)
    body = Body(None)
    raw = get(
        "/a/b?x=1&y=%20",
        "Host: example.com:8080",
        "Content-Type: text/plain",
        "Content-Length: 0",
        "User-Agent: t",
        method="POST",
    )
    env = build_environ(base, parse(raw), conn_info(), body)
    for key in PEP3333_CGI_KEYS:
        assert key in env, key
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a/b"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "0"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "8080")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_SOFTWARE"] == SERVER_SOFTWARE
    assert env["HTTP_HOST"] == "example.com:8080"
    assert env["HTTP_USER_AGENT"] == "t"
    assert env["RAW_URI"] == "/a/b?x=1&y=%20"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.1.2.3", "54321")
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input"] is body
    assert env["wsgi.errors"] is errors
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert env["greenhorn.socket"] is SOCK
    assert env["gunicorn.socket"] is SOCK
    for key, val in env.items():
        assert type(key) is str
        if key.isupper():  # CGI keys: native strings only (PEP 3333 "Unicode issues")
            assert type(val) is str, (key, val)
            val.encode("latin-1")


def test_base_environ_defaults():
    base = base_environ(multithread=False)
    assert base["wsgi.errors"] is sys.stderr
    assert base["SCRIPT_NAME"] == ""
    assert base["wsgi.multithread"] is False


def test_build_environ_does_not_modify_the_base():
    base = base_environ(multithread=False)
    before = dict(base)
    build_environ(base, parse(get("/x", "Host: h", "X-A: 1")), conn_info(), Body(None))
    assert base == before


def test_no_content_headers_no_content_keys():
    env = environ(get("/", "Host: h"))
    assert "CONTENT_TYPE" not in env or env["CONTENT_TYPE"] == ""
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] == ""


def test_path_info_is_percent_decoded_as_latin1():
    env = environ(get("/caf%C3%A9/a%2Fb/%41?q=%C3%A9", "Host: h"))
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a/b/A"
    assert env["QUERY_STRING"] == "q=%C3%A9"
    assert env["RAW_URI"] == "/caf%C3%A9/a%2Fb/%41?q=%C3%A9"


def test_empty_query():
    env = environ(get("/p?", "Host: h"))
    assert env["PATH_INFO"] == "/p"
    assert env["QUERY_STRING"] == ""


def test_absolute_form_target_gives_the_path():
    env = environ(get("http://example.com/x/y?z=1", "Host: example.com"))
    assert env["PATH_INFO"] == "/x/y"
    assert env["QUERY_STRING"] == "z=1"
    assert env["RAW_URI"] == "http://example.com/x/y?z=1"


def test_absolute_form_authority_gives_server_name_and_port():
    env = environ(get("http://A.example:81/x", "Host: a.example:81"))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("A.example", "81")
    assert env["HTTP_HOST"] == "a.example:81"


@pytest.mark.parametrize(
    "host, scheme, name, port",
    [
        ("example.com:8080", "http", "example.com", "8080"),
        ("example.com", "http", "example.com", "80"),
        ("example.com", "https", "example.com", "443"),
        ("127.0.0.1:9", "http", "127.0.0.1", "9"),
        ("[::1]:8000", "http", "[::1]", "8000"),
        ("[::1]", "http", "[::1]", "80"),
        ("[2001:db8::1]", "https", "[2001:db8::1]", "443"),
    ],
)
def test_server_name_and_port_from_host(host, scheme, name, port):
    env = environ(get("/", f"Host: {host}"), conn=conn_info(scheme=scheme))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == (name, port)
    assert env["HTTP_HOST"] == host


def test_server_name_from_host_with_empty_port():
    env = environ(get("/", "Host: example.com:"))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "80")


def test_server_name_falls_back_to_the_connection_without_host():
    env = environ(get("/", version="1.0"))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("listener.example", "8000")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert "HTTP_HOST" not in env


def test_repeated_headers_are_joined_with_commas():
    env = environ(get("/", "Host: h", "Accept: a", "X-Multi: 1", "Accept: b", "accept: c"))
    assert env["HTTP_ACCEPT"] == "a,b,c"
    assert env["HTTP_X_MULTI"] == "1"


def test_header_names_map_to_http_keys():
    env = environ(get("/", "Host: h", "X-Forwarded-For: 1.2.3.4", "dnt: 1", "If-None-Match: *"))
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert env["HTTP_DNT"] == "1"
    assert env["HTTP_IF_NONE_MATCH"] == "*"


def test_header_values_keep_latin1_text():
    env = environ(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n")
    assert env["HTTP_X_NAME"] == "caf\xe9"


def test_url_scheme_comes_from_the_connection():
    assert environ(get("/", "Host: h"), conn=conn_info(scheme="https"))["wsgi.url_scheme"] == (
        "https"
    )


# -- SCRIPT_NAME --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, path_info",
    [("/app/x", "/x"), ("/app/", "/"), ("/app", ""), ("/app/a%2Fb", "/a/b"), ("/other", "/other")],
)
def test_script_name_is_stripped_from_path_info(target, path_info):
    env = environ(get(target, "Host: h"), script_name="/app")
    assert env["SCRIPT_NAME"] == "/app"
    assert env["PATH_INFO"] == path_info


def test_script_name_is_only_stripped_at_a_segment_boundary():
    env = environ(get("/application", "Host: h"), script_name="/app")
    assert env["PATH_INFO"] == "" or env["PATH_INFO"].startswith("/")


# -- scheme headers and proxy trust -------------------------------------------------------


def scheme_of(*headers: str, allow: list[str], addr: str = "10.1.2.3", scheme="http") -> str:
    trust = ProxyTrust(allow, DEFAULT_SCHEME_HEADERS)
    env = environ(get("/", "Host: h", *headers), conn=conn_info(addr, scheme=scheme), trust=trust)
    return env["wsgi.url_scheme"]


def test_trust_answers_each_address_on_its_own_every_time():
    """The answers are remembered per address (a proxy connects from the same few): asking
    again, in any order, past the bound, never mixes two addresses up."""
    trust = ProxyTrust(["10.0.0.0/8", "::1"], {})
    for _ in range(2):
        assert trust.trusts("10.1.2.3") and trust.trusts("::1") and trust.trusts("")
        assert not trust.trusts("192.0.2.1") and not trust.trusts("not-an-ip")
    for i in range(600):  # past the bound: the memory is dropped, the answers stay right
        assert trust.trusts(f"10.0.{i // 256}.{i % 256}")
        assert not trust.trusts(f"192.0.{i // 256}.{i % 256}")
    assert trust.trusts("10.1.2.3") and not trust.trusts("192.0.2.1")


def test_untrusted_peer_cannot_set_the_scheme():
    assert scheme_of("X-Forwarded-Proto: https", allow=["127.0.0.1", "::1"]) == "http"


def test_untrusted_scheme_headers_still_reach_the_app():
    trust = ProxyTrust(["127.0.0.1"], DEFAULT_SCHEME_HEADERS)
    env = environ(get("/", "Host: h", "X-Forwarded-Proto: https"), trust=trust)
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["wsgi.url_scheme"] == "http"


def test_trusted_peer_sets_the_scheme():
    assert scheme_of("X-Forwarded-Proto: https", allow=["10.1.2.3"]) == "https"
    assert scheme_of("X-Forwarded-Ssl: on", allow=["10.1.2.3"]) == "https"
    assert scheme_of("X-Forwarded-Protocol: ssl", allow=["10.1.2.3"]) == "https"


def test_trusted_peer_can_also_say_http():
    assert scheme_of("X-Forwarded-Proto: http", allow=["*"], scheme="https") == "http"


def test_star_trusts_everyone():
    assert scheme_of("X-Forwarded-Proto: https", allow=["*"], addr="203.0.113.9") == "https"


@pytest.mark.parametrize(
    "allow, addr, trusted",
    [
        (["10.0.0.0/8"], "10.200.3.4", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["192.168.1.0/24", "127.0.0.1"], "127.0.0.1", True),
        (["::1"], "::1", True),
        (["::1"], "127.0.0.1", False),
        (["2001:db8::/32"], "2001:db8:1::5", True),
        (["2001:db8::/32"], "2001:db9::5", False),
        (["not-an-ip", " 10.1.2.3 "], "10.1.2.3", True),
        ([], "10.1.2.3", False),
    ],
)
def test_forwarded_allow_ips(allow, addr, trusted):
    assert ProxyTrust(allow, {}).trusts(addr) is trusted
    expected = "https" if trusted else "http"
    assert scheme_of("X-Forwarded-Proto: https", allow=allow, addr=addr) == expected


def test_garbage_peer_address_is_not_trusted():
    assert ProxyTrust(["10.0.0.0/8"], {}).trusts("garbage") is False


def test_unix_socket_peer_is_trusted_like_gunicorn():
    # gunicorn's forwarded_allow_ips docs: connections without an IP address are trusted
    assert scheme_of("X-Forwarded-Proto: https", allow=["127.0.0.1"], addr="") == "https"


def test_agreeing_trusted_scheme_headers():
    headers = ("X-Forwarded-Proto: https", "X-Forwarded-Ssl: on")
    assert scheme_of(*headers, allow=["*"]) == "https"


@pytest.mark.parametrize(
    "headers",
    [
        ("X-Forwarded-Proto: https", "X-Forwarded-Ssl: off"),
        ("X-Forwarded-Proto: http", "X-Forwarded-Protocol: ssl"),
        ("X-Forwarded-Proto: https", "X-Forwarded-Proto: http"),
    ],
)
def test_conflicting_trusted_scheme_headers_are_refused(headers):
    with pytest.raises(ConflictingSchemeHeaders):
        scheme_of(*headers, allow=["*"])


def test_conflicting_untrusted_scheme_headers_are_ignored():
    headers = ("X-Forwarded-Proto: https", "X-Forwarded-Ssl: off")
    assert scheme_of(*headers, allow=["127.0.0.1"]) == "http"


def test_no_trust_object_means_no_scheme_headers():
    env = environ(get("/", "Host: h", "X-Forwarded-Proto: https"), trust=None)
    assert env["wsgi.url_scheme"] == "http"


def test_custom_scheme_header_names_are_case_insensitive():
    trust = ProxyTrust(["*"], {"x-scheme": "HTTPS"})
    env = environ(get("/", "Host: h", "X-Scheme: https", "X-Forwarded-Proto: http"), trust=trust)
    assert env["wsgi.url_scheme"] == "https"


# -- Body (wsgi.input) --------------------------------------------------------------------


def puller(*pieces: bytes) -> tuple[Callable[[], bytes], list[int]]:
    """A pull function over ``pieces`` then ``b""``; it fails if called after the end."""
    queue = list(pieces)
    calls = [0]

    def pull() -> bytes:
        calls[0] += 1
        if calls[0] > len(pieces) + 1:
            raise AssertionError("pull() called after it returned b'' (the end)")
        return queue.pop(0) if queue else b""

    return pull, calls


DATA = b"ab\ncdefgh\n\nij"
LINES = [b"ab\n", b"cdefgh\n", b"\n", b"ij"]
ODD = (b"ab\ncd", b"e", b"fgh\n\ni", b"j")


def splits(data: bytes, *odd: tuple[bytes, ...]) -> list[tuple[bytes, ...]]:
    """Every fixed-size chunking of ``data``, plus the ``odd`` splits given."""
    out = [tuple(data[i : i + n] for i in range(0, len(data), n)) for n in range(1, len(data) + 1)]
    assert all(b"".join(split) == data for split in odd)
    return [*out, *odd]


@pytest.mark.parametrize("pieces", splits(DATA, ODD))
def test_body_readlines_any_split(pieces):
    assert Body(puller(*pieces)[0]).readlines() == LINES


@pytest.mark.parametrize("pieces", splits(DATA, ODD))
def test_body_iteration_any_split(pieces):
    assert list(Body(puller(*pieces)[0])) == LINES


@pytest.mark.parametrize("pieces", splits(DATA, ODD))
def test_body_read_any_split(pieces):
    body = Body(puller(*pieces)[0])
    assert body.read() == DATA
    assert body.read() == b""
    assert body.read(5) == b""
    assert body.finished


@pytest.mark.parametrize("pieces", splits(DATA, ODD))
def test_body_read_n_boundaries_any_split(pieces):
    body = Body(puller(*pieces)[0])
    assert body.read(1) == b"a"
    assert body.read(3) == b"b\nc"
    assert body.read(0) == b""
    assert body.readline() == b"defgh\n"
    assert body.read(2) == b"\ni"
    assert body.read(100) == b"j"
    assert body.read(1) == b""


def test_body_read_none_and_negative_read_everything():
    assert Body(puller(*ODD)[0]).read(None) == DATA
    assert Body(puller(*ODD)[0]).read(-1) == DATA


def test_body_read_n_pulls_only_what_it_needs():
    pull, calls = puller(b"abc", b"def", b"ghi")
    body = Body(pull)
    assert body.read(2) == b"ab"
    assert calls[0] == 1
    assert body.read(1) == b"c"
    assert calls[0] == 1
    assert body.read(0) == b""
    assert calls[0] == 1
    assert body.read(4) == b"defg"
    assert calls[0] == 3


def test_body_readline_pulls_only_up_to_the_line():
    pull, calls = puller(b"ab\ncd", b"ef\n", b"gh")
    body = Body(pull)
    assert body.readline() == b"ab\n"
    assert calls[0] == 1
    assert body.readline() == b"cdef\n"
    assert calls[0] == 2


@pytest.mark.parametrize("pieces", splits(b"abcdef\ngh", (b"a", b"bcde", b"f\ng", b"h")))
def test_body_readline_size_limits(pieces):
    body = Body(puller(*pieces)[0])
    assert body.readline(0) == b""
    assert body.readline(4) == b"abcd"
    assert body.readline(2) == b"ef"
    assert body.readline(5) == b"\n"
    assert body.readline(1) == b"g"
    assert body.readline(10) == b"h"
    assert body.readline(10) == b""


def test_body_readline_size_none_or_negative_is_unlimited():
    body = Body(puller(*ODD)[0])
    assert body.readline(None) == b"ab\n"
    assert body.readline(-1) == b"cdefgh\n"


@pytest.mark.parametrize(
    "hint, expected",
    [
        (1, LINES[:1]),
        (3, LINES[:1]),
        (4, LINES[:2]),
        (10, LINES[:2]),
        (11, LINES[:3]),
        (0, LINES),
        (-1, LINES),
        (None, LINES),
    ],
)
def test_body_readlines_hint(hint, expected):
    body = Body(puller(*ODD)[0])
    assert body.readlines(hint) == expected
    assert b"".join(expected) + body.read() == DATA


def test_body_without_a_puller_is_empty():
    body = Body(None)
    assert body.finished
    assert body.read() == b""
    assert body.read(3) == b""
    assert body.readline() == b""
    assert body.readlines() == []
    assert list(body) == []
    assert body.drain(0) is True


def test_body_never_pulls_after_the_end():
    pull, calls = puller(b"x")
    body = Body(pull)
    assert body.read() == b"x"
    for _ in range(3):
        assert body.read() == b""
        assert body.read(1) == b""
        assert body.readline() == b""
        assert body.drain(10) is True
    assert calls[0] == 2


def test_body_finished_only_after_the_end_is_seen():
    body = Body(puller(b"abc")[0])
    assert not body.finished
    assert body.read(3) == b"abc"
    assert not body.finished  # the end has not been pulled yet
    assert body.read(1) == b""
    assert body.finished


def test_drain_reads_the_rest_within_the_limit():
    pull, calls = puller(b"a" * 10, b"b" * 10, b"c" * 5)
    body = Body(pull)
    assert body.read(3) == b"aaa"
    assert body.drain(100) is True
    assert body.finished
    assert calls[0] == 4
    assert body.read() == b""


def test_drain_gives_up_past_the_limit():
    pieces = [b"x" * 10] * 50
    pull, calls = puller(*pieces)
    body = Body(pull)
    assert body.drain(25) is False
    assert not body.finished
    assert 3 <= calls[0] <= 4  # bounded: it stopped soon after the limit, not at the end


def test_drain_exactly_at_the_limit_finishes():
    body = Body(puller(b"x" * 10, b"y" * 10)[0])
    assert body.drain(20) is True
    assert body.finished


class TooSlow(Exception):
    pass


def timed_puller(pieces: int, size: int, budget: float) -> Callable[[], bytes]:
    """``pieces`` pieces of ``size`` bytes; raises TooSlow once ``budget`` seconds have passed.

    The budget is about 100 times what a linear read needs, so the test fails fast (instead of
    hanging for minutes) when reading is quadratic and never fails when it is not.
    """
    left = [pieces]
    piece = b"x" * size
    deadline = time.monotonic() + budget

    def pull() -> bytes:
        if time.monotonic() > deadline:
            raise TooSlow(f"{pieces - left[0]} of {pieces} pieces pulled in {budget}s")
        if not left[0]:
            return b""
        left[0] -= 1
        return piece

    return pull


def test_body_read_of_many_pieces_is_linear():
    body = Body(timed_puller(4096, 2048, budget=1.0))
    assert len(body.read(8 * 1024 * 1024)) == 4096 * 2048  # Django's read(CONTENT_LENGTH)
    assert body.read() == b""


# -- FileWrapper --------------------------------------------------------------------------


def test_file_wrapper_iterates_in_blocks():
    data = bytes(range(256)) * 80  # 20480 bytes
    wrapper = FileWrapper(io.BytesIO(data))
    blocks = list(wrapper)
    assert [len(b) for b in blocks] == [8192, 8192, 4096]
    assert b"".join(blocks) == data


def test_file_wrapper_custom_block_size_and_position():
    f = io.BytesIO(b"0123456789")
    f.seek(3)
    assert list(FileWrapper(f, 3)) == [b"345", b"678", b"9"]


def test_file_wrapper_close_closes_the_file():
    f = io.BytesIO(b"abc")
    wrapper = FileWrapper(f)
    assert wrapper.filelike is f
    wrapper.close()
    assert f.closed


def test_file_wrapper_close_without_a_close_method():
    class Reader:
        def __init__(self) -> None:
            self.left = [b"a", b"b"]

        def read(self, size: int) -> bytes:
            return self.left.pop(0) if self.left else b""

    wrapper = FileWrapper(Reader(), 1)
    assert list(wrapper) == [b"a", b"b"]
    wrapper.close()  # nothing to close: no error


def test_file_wrapper_empty_file():
    assert list(FileWrapper(io.BytesIO(b""))) == []


def test_parser_lets_the_caller_receive_a_content_length_body_itself():
    parser = Parser()
    parser.feed(get("/", "Host: h", "Content-Length: 10", method="POST") + b"abc")
    assert isinstance(parser.next_event(), Request)
    assert parser.body_left() == 10  # 3 of them buffered here
    with pytest.raises(RuntimeError):
        parser.body_received(7)  # not while bytes are buffered
    assert parser.next_event().data == b"abc"  # type: ignore[union-attr]
    assert parser.body_left() == 7
    with pytest.raises(RuntimeError):
        parser.body_received(8)  # past the body
    parser.body_received(7)
    assert parser.body_left() == 0
    assert parser.next_event().__class__.__name__ == "EndOfMessage"
    assert parser.body_left() is None
    chunked = Parser()
    chunked.feed(get("/", "Host: h", "Transfer-Encoding: chunked", method="POST"))
    chunked.next_event()
    assert chunked.body_left() is None


def test_forwarder_headers_are_set_apart_and_applied_only_when_trusted():
    from greenhorn.wsgi.environ import settle_forwarded

    limits = Limits(forwarders=frozenset({"SCRIPT_NAME", "REMOTE_USER"}))
    raw = get("/app/x", "Host: h", "Script_Name: /app", "Remote_User: ann", "X_Other: 1")
    for trusted, header_map, script, path in [
        (True, "drop", "/app", "/x"),
        (False, "drop", "", "/app/x"),
        (False, "dangerous", "", "/app/x"),
    ]:
        parser = Parser(limits)
        req = parser.receive(raw)
        assert req.forwarded == [("SCRIPT_NAME", "/app"), ("REMOTE_USER", "ann")]
        settle_forwarded(req, trusted, header_map)
        base = base_environ(multithread=False)
        env = build_environ(base, req, conn_info(), Body(None))
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, path)
        assert "REMOTE_USER" not in env  # never from a header (gunicorn 27: HTTP_ only)
        assert env.get("HTTP_REMOTE_USER") == (
            "ann" if trusted or header_map == "dangerous" else None
        )
        assert ("HTTP_SCRIPT_NAME" in env) == (header_map == "dangerous" or trusted)
        assert "HTTP_X_OTHER" not in env  # not listed: header_map "drop" (the parser's)
    req = Parser(limits).receive(raw)
    with pytest.raises(Exception, match="underscore"):
        settle_forwarded(req, False, "refuse")
