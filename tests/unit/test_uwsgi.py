"""greenhorn.http.uwsgi: uwsgi packets (as nginx's uwsgi_pass sends them) into the HTTP
parser's Request/Data/EndOfMessage, in every chunking, and every refusal."""

from __future__ import annotations

import itertools
import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenhorn.http import errors, uwsgi
from greenhorn.http.body import Data, EndOfMessage
from greenhorn.http.parser import EOF, NEED_DATA, Limits

# -- a small encoder (the test's own) ---------------------------------------------------------


def block(pairs: list[tuple[str | bytes, str | bytes]]) -> bytes:
    out = b""
    for key, value in pairs:
        k = key.encode("latin-1") if isinstance(key, str) else key
        v = value.encode("latin-1") if isinstance(value, str) else value
        out += len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
    return out


def packet(
    pairs: list[tuple[str | bytes, str | bytes]],
    modifier1: int = 0,
    modifier2: int = 0,
    datasize: int | None = None,
) -> bytes:
    data = block(pairs)
    size = len(data) if datasize is None else datasize
    return bytes((modifier1,)) + size.to_bytes(2, "little") + bytes((modifier2,)) + data


# What nginx 1.22 sent for `curl 'http://127.0.0.1:38410/a%20b/c?x=1&y=%2F' -H 'X-Dup: one'
# -H 'X-Dup: two'` with `include uwsgi_params` (captured once from a real nginx; note the
# empty CONTENT_TYPE/CONTENT_LENGTH and the repeated HTTP_X_DUP).
NGINX_GET = [
    ("QUERY_STRING", "x=1&y=%2F"),
    ("REQUEST_METHOD", "GET"),
    ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""),
    ("REQUEST_URI", "/a%20b/c?x=1&y=%2F"),
    ("PATH_INFO", "/a b/c"),
    ("DOCUMENT_ROOT", "/etc/nginx/html"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"),
    ("REMOTE_ADDR", "203.0.113.7"),
    ("REMOTE_PORT", "56656"),
    ("SERVER_PORT", "38410"),
    ("SERVER_NAME", ""),
    ("HTTP_HOST", "127.0.0.1"),
    ("HTTP_USER_AGENT", "curl/7.88.1"),
    ("HTTP_ACCEPT", "*/*"),
    ("HTTP_X_DUP", "one"),
    ("HTTP_X_DUP", "two"),
]

# ... and for a chunked POST of "chunky": nginx buffered it and sent its length.
NGINX_CHUNKED_POST = [
    ("QUERY_STRING", ""),
    ("REQUEST_METHOD", "POST"),
    ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
    ("CONTENT_LENGTH", "6"),
    ("REQUEST_URI", "/chunk"),
    ("PATH_INFO", "/chunk"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "https"),
    ("HTTPS", "on"),
    ("REMOTE_ADDR", "2001:db8::1"),
    ("REMOTE_PORT", "40332"),
    ("SERVER_PORT", "443"),
    ("SERVER_NAME", "example.com"),
    ("HTTP_HOST", "example.com"),
    ("HTTP_TRANSFER_ENCODING", "chunked"),
    ("HTTP_CONTENT_TYPE", "application/x-www-form-urlencoded"),
]


def events(
    data: bytes, splits: list[int] | None = None, eof: bool = True, **kw: object
) -> list[object]:
    """Every event for ``data`` fed in pieces (cut at ``splits``), then EOF if asked; the
    parser moves on to the next packet after each EndOfMessage."""
    parser = uwsgi.UwsgiParser(**kw)  # type: ignore[arg-type]
    out: list[object] = []
    cuts = [0, *(splits or []), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]
    if eof:
        pieces.append(b"")
    for piece in pieces:
        parser.feed(piece)
        while True:
            ev = parser.next_event()
            if ev is NEED_DATA:
                break
            if ev is EOF:
                out.append(EOF)
                return out
            out.append(ev)
            if isinstance(ev, EndOfMessage):
                parser.start_next()
    return out


def summary(evs: list[object]) -> list[object]:
    """Comparable form: requests as tuples, body pieces joined per request."""
    out: list[object] = []
    body = b""
    for ev in evs:
        if isinstance(ev, uwsgi.UwsgiRequest):
            out.append(
                (
                    "req",
                    ev.method,
                    ev.uri,
                    ev.path,
                    ev.query,
                    ev.version,
                    ev.headers,
                    ev.vars,
                    ev.content_length,
                )
            )
        elif isinstance(ev, Data):
            body += ev.data
        elif isinstance(ev, EndOfMessage):
            out.append(("body", body))
            body = b""
        else:
            out.append(ev)
    return out


def refusal(data: bytes, **kw: object) -> errors.HTTPError:
    with pytest.raises(errors.HTTPError) as info:
        events(data, **kw)
    return info.value


# -- what nginx sends ------------------------------------------------------------------------


def test_nginx_get():
    (req, end, eof) = events(packet(NGINX_GET))
    assert isinstance(req, uwsgi.UwsgiRequest)
    assert (req.method, req.uri, req.version) == ("GET", "/a%20b/c?x=1&y=%2F", (1, 1))
    assert (req.path, req.query, req.fragment) == ("/a%20b/c", "x=1&y=%2F", "")
    assert req.headers == [
        ("HOST", "127.0.0.1"),
        ("USER-AGENT", "curl/7.88.1"),
        ("ACCEPT", "*/*"),
        ("X-DUP", "one"),
        ("X-DUP", "two"),
    ]
    assert req.host == "127.0.0.1" and req.content_length == 0 and not req.chunked
    assert (req.remote_addr, req.remote_port, req.scheme) == ("203.0.113.7", "56656", "http")
    assert (req.server_name, req.server_port) == ("", "38410")
    assert req.path_info == "/a b/c" and req.script_name is None
    assert req.vars["DOCUMENT_ROOT"] == "/etc/nginx/html" and "HTTP_HOST" not in req.vars
    assert req.keep_alive is False and req.expect_continue is False
    assert isinstance(end, EndOfMessage) and eof is EOF


def test_nginx_chunked_post_framed_by_content_length():
    evs = events(packet(NGINX_CHUNKED_POST) + b"chunky")
    req = evs[0]
    assert isinstance(req, uwsgi.UwsgiRequest)
    assert req.content_length == 6 and not req.chunked
    # the proxy's framing headers are not ours: only the CGI variables' values remain
    assert req.headers == [
        ("HOST", "example.com"),
        ("CONTENT-LENGTH", "6"),
        ("CONTENT-TYPE", "application/x-www-form-urlencoded"),
    ]
    assert req.scheme == "https" and req.remote_addr == "2001:db8::1"
    assert summary(evs)[1:] == [("body", b"chunky"), EOF]


def _environ(pairs, body=b"", conn_addr=("192.0.2.1", 5000), base_script=None):
    from greenhorn.workers.connection import Connection
    from greenhorn.wsgi.environ import base_environ, build_uwsgi_environ
    from greenhorn.wsgi.input import Body

    (req, *_) = events(packet(pairs) + body)
    conn = Connection(object(), conn_addr, ("greenhorn.local", "8000"), Limits(), 0.0)
    base = base_environ(multithread=False, errors=sys.stderr, script_name=base_script)
    return req, build_uwsgi_environ(base, req, conn, Body(None))


def test_environ_from_a_uwsgi_request():
    """The proxy's CGI variables as it sent them, the headers as HTTP_* keys, PATH_INFO as
    the proxy decoded it, the length and type as CGI keys; the client's address, not the
    connection's."""
    replace = {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "3", "PATH_INFO": "/caf\xe9/%41 b?"}
    pairs = [(k, replace.get(k, v)) for k, v in NGINX_GET]
    _, env = _environ(pairs, b"abc")
    assert env["PATH_INFO"] == "/caf\xe9/%41 b?"
    assert env["QUERY_STRING"] == "x=1&y=%2F" and env["REQUEST_URI"] == "/a%20b/c?x=1&y=%2F"
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["REMOTE_PORT"] == "56656"
    assert env["HTTP_X_DUP"] == "one,two" and env["HTTP_HOST"] == "127.0.0.1"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "3"
    assert env["DOCUMENT_ROOT"] == "/etc/nginx/html" and env["REQUEST_SCHEME"] == "http"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["wsgi.url_scheme"] == "http"
    # SERVER_NAME was empty: the Host's; SERVER_PORT is nginx's
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "38410")
    assert env["SCRIPT_NAME"] == ""


def test_environ_leaves_out_what_is_empty_or_dotted():
    pairs = [*NGINX_GET, ("wsgi.url_scheme", "https"), ("wsgi.input", "x"), ("UWSGI_APPID", "a")]
    req, env = _environ(pairs)
    assert req.extensions and req.vars["wsgi.input"] == "x"
    assert env["wsgi.url_scheme"] == "https"  # gunicorn reads this variable too
    assert env["wsgi.input"] is not None and env["wsgi.input"] != "x"
    assert env["UWSGI_APPID"] == "a"
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env  # nginx sent them empty


def test_environ_takes_what_the_proxy_left_out_from_the_connection():
    pairs = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/x"), ("HTTPS", "on")]
    _, env = _environ(pairs)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.1", "5000")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("greenhorn.local", "8000")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["wsgi.url_scheme"] == "https"
    _, env = _environ([*pairs, ("HTTP_HOST", "shop.example")])
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "443")


def test_environ_reports_the_clients_protocol():
    """nginx says HTTP/2.0 for an HTTP/2 client: so does the environ (the HTTP path's
    builder would say HTTP/1.0 for anything but 1.1)."""
    pairs = [(k, "HTTP/2.0" if k == "SERVER_PROTOCOL" else v) for k, v in NGINX_GET]
    req, env = _environ(pairs)
    assert req.version == (2, 0) and env["SERVER_PROTOCOL"] == "HTTP/2.0"


@pytest.mark.parametrize(
    "script, base_script, path_info, expected",
    [
        ("/app", None, "/app/users/1", ("/app", "/users/1")),
        ("/app", None, "/app", ("/app", "")),
        ("/app", None, "/application", ("/app", "/application")),  # not at a segment boundary
        (None, "/mnt", "/mnt/x", ("/mnt", "/x")),  # the SCRIPT_NAME environment variable
        ("/app", "/mnt", "/app/x", ("/app", "/x")),  # the proxy's wins
    ],
)
def test_environ_script_name(script, base_script, path_info, expected):
    pairs = [("REQUEST_METHOD", "GET"), ("PATH_INFO", path_info)]
    if script is not None:
        pairs.append(("SCRIPT_NAME", script))
    _, env = _environ(pairs, base_script=base_script)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == expected


def test_asgi_scope_from_a_uwsgi_request():
    from greenhorn.asgi.scope import template, uwsgi_scope

    pairs = [(k, "HTTP/2.0" if k == "SERVER_PROTOCOL" else v) for k, v in NGINX_GET]
    (req, *_) = events(packet([*pairs, ("SCRIPT_NAME", "/a b")]))
    base = template("http", ("10.0.0.1", 8000), ("10.0.0.2", 4000), False, "/mnt")
    scope = uwsgi_scope(base, req, None)
    assert scope["client"] == ("203.0.113.7", 56656)
    assert scope["server"] == ("127.0.0.1", 38410)
    assert scope["http_version"] == "2" and scope["scheme"] == "http"
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/a b", "/a b/c", b"/a%20b/c")
    assert scope["query_string"] == b"x=1&y=%2F"
    assert uwsgi_scope(base, req, None, "https")["scheme"] == "https"  # a trusted header
    (req, *_) = events(packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/x")]))
    scope = uwsgi_scope(base, req, None)
    assert scope["client"] == ("10.0.0.2", 4000) and scope["server"] == ("10.0.0.1", 8000)
    assert (scope["root_path"], scope["path"], scope["http_version"]) == ("/mnt", "/mnt/x", "1.1")


@pytest.mark.parametrize(
    "variables, scheme",
    [
        ({}, "http"),
        ({"HTTPS": "on"}, "https"),
        ({"HTTPS": "1"}, "https"),
        ({"HTTPS": "off"}, "http"),
        ({"REQUEST_SCHEME": "https"}, "https"),
        ({"UWSGI_SCHEME": "https"}, "https"),
        ({"UWSGI_SCHEME": "http", "HTTPS": "on"}, "http"),
        ({"wsgi.url_scheme": "https"}, "https"),
    ],
)
def test_scheme(variables, scheme):
    (req, *_) = events(
        packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), *variables.items()])
    )
    assert req.scheme == scheme


@pytest.mark.parametrize(
    "variables, uri, path, query",
    [
        ({"PATH_INFO": "/p", "QUERY_STRING": "a=1"}, "/p?a=1", "/p", "a=1"),
        ({"PATH_INFO": "/p q"}, "/p%20q", "/p%20q", ""),
        ({"REQUEST_URI": "/x?y"}, "/x?y", "/x", "y"),
        ({"REQUEST_URI": "/x?y", "QUERY_STRING": "z"}, "/x?y", "/x", "z"),
        # after an nginx rewrite PATH_INFO is the rewritten path; REQUEST_URI the original
        (
            {"REQUEST_URI": "/old?q", "PATH_INFO": "/new", "QUERY_STRING": "q"},
            "/old?q",
            "/new",
            "q",
        ),
        ({"REQUEST_URI": "http://h.example/abs?q=1"}, "http://h.example/abs?q=1", "/abs", "q=1"),
        ({"REQUEST_URI": "http://h.example"}, "http://h.example", "/", ""),
        ({"REQUEST_URI": "*", "REQUEST_METHOD": "OPTIONS"}, "*", "*", ""),
    ],
)
def test_target_from_variables(variables, uri, path, query):
    pairs = [("REQUEST_METHOD", variables.pop("REQUEST_METHOD", "GET")), *variables.items()]
    (req, *_) = events(packet(pairs))
    assert (req.uri, req.path, req.query) == (uri, path, query)


@pytest.mark.parametrize(
    "protocol, version",
    [("HTTP/1.0", (1, 0)), ("HTTP/1.1", (1, 1)), ("HTTP/2.0", (2, 0)), ("HTTP/3.0", (3, 0))],
)
def test_server_protocol(protocol, version):
    (req, *_) = events(
        packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/"), ("SERVER_PROTOCOL", protocol)])
    )
    assert req.version == version


def test_content_length_fallbacks():
    base = [("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/")]
    # no CONTENT_LENGTH variable: the header's length frames the body
    evs = summary(events(packet([*base, ("HTTP_CONTENT_LENGTH", "2")]) + b"hi"))
    assert evs[1] == ("body", b"hi")
    # both, agreeing
    evs = summary(
        events(packet([*base, ("CONTENT_LENGTH", "2"), ("HTTP_CONTENT_LENGTH", "2")]) + b"hi")
    )
    assert evs[1] == ("body", b"hi")
    # content type from the header when the variable is absent
    (req, *_) = events(packet([*base, ("HTTP_CONTENT_TYPE", "a/b")]))
    assert req.headers == [("CONTENT-TYPE", "a/b")]


# -- keep-alive and chunkings ----------------------------------------------------------------

STREAM = (
    packet(NGINX_GET)
    + packet([("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/up"), ("CONTENT_LENGTH", "5")])
    + b"hello"
    + packet(NGINX_CHUNKED_POST)
    + b"chunky"
    + packet([("REQUEST_METHOD", "PUT"), ("REQUEST_URI", "/big"), ("CONTENT_LENGTH", "70000")])
    + bytes(range(256)) * 273
    + b"\xaa" * 112
)


def test_several_packets_on_one_connection():
    evs = summary(events(STREAM))
    assert [e[0] if isinstance(e, tuple) else e for e in evs] == ["req", "body"] * 4 + [EOF]
    assert evs[3] == ("body", b"hello") and evs[5] == ("body", b"chunky")
    assert evs[7] == ("body", bytes(range(256)) * 273 + b"\xaa" * 112)


def test_byte_by_byte_and_random_splits():
    whole = summary(events(STREAM))
    assert summary(events(STREAM, splits=list(range(1, len(STREAM))))) == whole
    rng = random.Random(2009)
    for _ in range(40):
        splits = sorted(rng.sample(range(1, len(STREAM)), rng.randrange(1, 30)))
        assert summary(events(STREAM, splits=splits)) == whole


def test_start_next_only_after_the_body():
    parser = uwsgi.UwsgiParser()
    parser.feed(packet([("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/"), ("CONTENT_LENGTH", "3")]))
    assert isinstance(parser.next_event(), uwsgi.UwsgiRequest)
    with pytest.raises(RuntimeError):
        parser.start_next()
    assert parser.body_left() == 3
    parser.body_received(3)  # the handler read the body straight from the socket
    assert isinstance(parser.next_event(), EndOfMessage)
    parser.start_next()
    assert parser.next_event() is NEED_DATA
    with pytest.raises(RuntimeError):
        parser.body_received(1)


def test_need_data_until_the_whole_packet():
    data = packet(NGINX_GET)
    parser = uwsgi.UwsgiParser()
    for i in range(len(data) - 1):
        parser.feed(data[i : i + 1])
        assert parser.next_event() is NEED_DATA
    parser.feed(data[-1:])
    assert isinstance(parser.next_event(), uwsgi.UwsgiRequest)


# -- refusals --------------------------------------------------------------------------------

OK = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/")]


@pytest.mark.parametrize(
    "data, cls, text",
    [
        (packet(OK, modifier1=5), uwsgi.UnsupportedModifier, "modifier1 5"),
        (b"\x01", uwsgi.UnsupportedModifier, "modifier1 1"),
        (
            packet(OK, datasize=len(block(OK)) + 3) + b"\x00\x00",
            uwsgi.IncompletePacket,
            "closed inside",
        ),
        (packet(OK)[:-1], uwsgi.IncompletePacket, "closed inside"),
        (packet(OK)[:3], uwsgi.IncompletePacket, "closed inside"),
        # sizes that lie, inside a packet whose datasize is right
        (
            b"\x00\x08\x00\x00" + b"\x09\x00KEY\x00\x00\x00\x00",
            uwsgi.InvalidPacket,
            "name runs past",
        ),
        (
            b"\x00\x08\x00\x00" + b"\x03\x00KEY\x09\x00v",
            uwsgi.InvalidPacket,
            "value of KEY runs past",
        ),
        (packet(OK, datasize=len(block(OK)) + 1) + b"\x05", uwsgi.InvalidPacket, "stray byte"),
        (
            packet(OK, datasize=len(block(OK)) + 2) + b"\x00\x00",
            uwsgi.InvalidPacket,
            "empty variable name",
        ),
        (packet([*OK, ("BAD KEY", "x")]), uwsgi.InvalidPacket, "invalid variable name"),
        (packet([*OK, ("K\xe9Y", "x")]), uwsgi.InvalidPacket, "invalid variable name"),
        (packet([*OK, ("HTTP_", "x")]), uwsgi.InvalidPacket, "names no header"),
        (
            packet([*OK, ("REMOTE_ADDR", "1.2.3.4"), ("REMOTE_ADDR", "5.6.7.8")]),
            uwsgi.DuplicateVar,
            "REMOTE_ADDR",
        ),
        (packet([*OK, ("REQUEST_METHOD", "POST")]), uwsgi.DuplicateVar, "REQUEST_METHOD"),
        (packet([("REQUEST_URI", "/")]), uwsgi.InvalidVar, "no REQUEST_METHOD"),
        (
            packet([("REQUEST_METHOD", "GET")]),
            uwsgi.InvalidVar,
            "neither REQUEST_URI nor PATH_INFO",
        ),
        (packet([*OK, ("SERVER_PORT", "80a")]), uwsgi.InvalidVar, "SERVER_PORT"),
        (packet([*OK, ("REMOTE_PORT", "65536")]), uwsgi.InvalidVar, "REMOTE_PORT"),
        (packet([*OK, ("UWSGI_SCHEME", "gopher")]), uwsgi.InvalidVar, "UWSGI_SCHEME"),
        (packet([*OK, ("wsgi.url_scheme", "ftp")]), uwsgi.InvalidVar, "wsgi.url_scheme"),
        (packet([*OK, ("a.b", "1"), ("a.b", "2")]), uwsgi.DuplicateVar, "a.b"),
        (packet([*OK, ("QUERY_STRING", "a b")]), uwsgi.InvalidVar, "QUERY_STRING"),
        (packet([("REQUEST_METHOD", "G(T"), ("REQUEST_URI", "/")]), errors.InvalidMethod, "method"),
        (
            packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/a b")]),
            errors.InvalidTarget,
            "REQUEST_URI",
        ),
        # the HTTP parser's target rules: raw non-ASCII, asterisk-form outside OPTIONS, CONNECT
        (
            packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/caf\xe9")]),
            errors.InvalidTarget,
            "REQUEST_URI",
        ),
        (
            packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", "*")]),
            errors.InvalidTarget,
            "asterisk",
        ),
        (
            packet([("REQUEST_METHOD", "CONNECT"), ("REQUEST_URI", "h.example:443")]),
            errors.UnsupportedMethod,
            "tunnel",
        ),
        (packet([*OK, ("SERVER_PROTOCOL", "HTTP/1")]), errors.InvalidVersion, "SERVER_PROTOCOL"),
        (packet([*OK, ("HTTP_X_A", "a\r\nX-B: b")]), errors.InvalidHeader, "value of X-A"),
        (packet([*OK, ("HTTP_HOST", "a"), ("HTTP_HOST", "b")]), errors.DuplicateHeader, "Host"),
        (packet([*OK, ("HTTP_HOST", "a b")]), errors.InvalidHeader, "Host"),
        (packet([*OK, ("CONTENT_LENGTH", "-1")]), errors.InvalidContentLength, "CONTENT_LENGTH"),
        (
            packet([*OK, ("CONTENT_LENGTH", "1" * 19)]),
            errors.InvalidContentLength,
            "CONTENT_LENGTH",
        ),
        (
            packet([*OK, ("CONTENT_LENGTH", "3"), ("HTTP_CONTENT_LENGTH", "4")]),
            errors.ConflictingFraming,
            "disagree",
        ),
        (
            packet([*OK, ("CONTENT_LENGTH", ""), ("HTTP_CONTENT_LENGTH", "4")]),
            errors.ConflictingFraming,
            "disagree",
        ),
        (
            packet([*OK, ("HTTP_CONTENT_LENGTH", "3"), ("HTTP_CONTENT_LENGTH", "3")]),
            errors.DuplicateHeader,
            "repeated",
        ),
        (
            packet([*OK, ("HTTP_TRANSFER_ENCODING", "chunked")]),
            errors.InvalidTransferEncoding,
            "without CONTENT_LENGTH",
        ),
        (packet([*OK, ("CONTENT_TYPE", "a\x00b")]), errors.InvalidHeader, "CONTENT_TYPE"),
        (
            packet([*OK, ("CONTENT_LENGTH", "10")]) + b"short",
            errors.IncompleteRequest,
            "inside the request body",
        ),
    ],
)
def test_refusals(data, cls, text):
    exc = refusal(data)
    assert type(exc) is cls, exc
    assert text in str(exc)
    assert str(exc).isascii()


def test_error_classes_carry_status():
    for cls in (
        uwsgi.InvalidPacket,
        uwsgi.PacketTooLarge,
        uwsgi.UnsupportedModifier,
        uwsgi.IncompletePacket,
        uwsgi.DuplicateVar,
        uwsgi.InvalidVar,
    ):
        assert issubclass(cls, errors.HTTPError)  # the handler's one except clause
    assert uwsgi.InvalidPacket().code == 400
    assert uwsgi.UnsupportedModifier().code == 501
    assert uwsgi.PacketTooLarge().code == 431


def test_packet_size_checked_from_the_header():
    """An oversized packet fails from its 4-byte header: nothing more is waited for."""
    parser = uwsgi.UwsgiParser(max_packet=100)
    parser.feed(b"\x00\x65\x00\x00")  # datasize 101
    with pytest.raises(uwsgi.PacketTooLarge, match="101 bytes"):
        parser.next_event()
    ok = packet([*OK, ("X", "y" * (100 - len(block(OK)) - 5))])
    assert len(ok) == 104
    assert isinstance(events(ok, max_packet=100)[0], uwsgi.UwsgiRequest)


def test_header_limits_are_the_http_limits():
    many = [*OK, *((f"HTTP_X_{i}", "v") for i in range(101))]
    assert isinstance(refusal(packet(many)), errors.TooManyHeaders)
    assert isinstance(events(packet(many), limits=Limits(max_fields=200))[0], uwsgi.UwsgiRequest)
    big = [*OK, ("HTTP_COOKIE", "c" * 9000)]
    assert isinstance(refusal(packet(big)), errors.HeaderFieldTooLarge)
    long_uri = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/" + "a" * 9000)]
    assert refusal(packet(long_uri)).code == 414


def test_errors_are_final():
    parser = uwsgi.UwsgiParser()
    parser.feed(packet(OK, modifier1=1))
    with pytest.raises(uwsgi.UnsupportedModifier):
        parser.next_event()
    parser.feed(packet(OK))
    with pytest.raises(uwsgi.UnsupportedModifier):
        parser.next_event()
    assert parser.buffered == 0


def test_eof_between_packets_is_clean():
    assert events(b"") == [EOF]
    assert summary(events(packet(OK)))[-1] is EOF


# -- Hypothesis: encoder → parser round trips ---------------------------------------------------

key_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=20)
value_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
# the request-target's bytes (target.TARGET): visible ASCII but "#" and "\\"
uri_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#\\"),
    max_size=40,
).map(lambda s: "/" + s)


@st.composite
def request_vars(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    extra = draw(
        st.dictionaries(
            key_text.filter(
                lambda k: (
                    not k.startswith(
                        (
                            "HTTP",
                            "CONTENT",
                            "REQUEST",
                            "SERVER",
                            "QUERY",
                            "PATH",
                            "REMOTE",
                            "UWSGI",
                            "HTTPS",
                        )
                    )
                )
            ),
            value_text,
            max_size=8,
        )
    )
    headers = draw(
        st.lists(
            st.tuples(
                key_text.filter(
                    lambda k: (
                        k.strip("_") == k
                        and "__" not in k
                        and k not in ("HOST", "CONTENT_LENGTH", "CONTENT_TYPE", "TRANSFER_ENCODING")
                    )
                ),
                value_text.map(lambda v: v.strip(" \t")),
            ),
            max_size=8,
        )
    )
    body = draw(st.binary(max_size=3000))
    pairs = [
        ("REQUEST_METHOD", draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))),
        ("REQUEST_URI", draw(uri_text)),
    ]
    pairs += [("CONTENT_LENGTH", str(len(body)) if body else "")]
    pairs += list(extra.items())
    pairs += [("HTTP_" + k, v) for k, v in headers]
    draw(st.randoms()).shuffle(pairs)
    return pairs, body


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(request_vars(), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_roundtrip(requests, rnd):
    data = b"".join(packet(pairs) + body for pairs, body in requests)
    splits = sorted(set(rnd.sample(range(1, len(data)), min(len(data) - 1, 12))))
    evs = summary(events(data, splits=splits))
    assert evs[-1] is EOF
    got = [e for e in evs if isinstance(e, tuple)]
    assert len(got) == 2 * len(requests)
    for (pairs, body), req, (_, received) in zip(requests, got[0::2], got[1::2], strict=True):
        _, method, uri, path, query, _version, headers, variables, length = req
        sent = dict(pairs)
        assert (method, uri, length, received) == (
            sent["REQUEST_METHOD"],
            sent["REQUEST_URI"],
            len(body),
            body,
        )
        uri_path, _, uri_query = uri.partition("?")
        assert (path, query) == (uri_path, uri_query)
        expected = [(k[5:].replace("_", "-"), v) for k, v in pairs if k.startswith("HTTP_")]
        if body:
            expected.append(("CONTENT-LENGTH", str(len(body))))
        assert headers == expected
        assert variables == {k: v for k, v in pairs if not k.startswith("HTTP_")}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data):
    """Garbage gives events or an HTTPError, never another exception."""
    try:
        events(data)
    except errors.HTTPError:
        pass
