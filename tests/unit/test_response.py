"""The response writer: what bytes may leave the server for a status and a header list.

``greenhorn.http.response.prepare`` is the only place where application-supplied status and
headers become wire bytes, so these tests pin its rules: nothing the application sends can
split the response (CR, LF, NUL, other CTLs, non-tokens, non-latin-1 text), hop-by-hop headers
belong to the server, and the framing (Content-Length, chunked, close-delimited, no body) is
chosen exactly as RFC 9112 §6 and PEP 3333 require. ``error_response`` must be a complete,
self-delimited answer, and ``http_date`` an IMF-fixdate computed once a second.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenhorn.http.response import (
    CONTINUE,
    LAST_CHUNK,
    InvalidResponse,
    chunk,
    error_response,
    http_date,
    prepare,
)

IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)

HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
)


def run(
    status: str = "200 OK",
    headers: list | None = None,
    *,
    version: tuple[int, int] = (1, 1),
    method: str = "GET",
    keep_alive: bool = True,
    known_length: int | None = None,
):
    """``prepare`` with everyday defaults; returns (head text, framing, sent headers)."""
    head, framing, sent = prepare(
        status,
        [] if headers is None else headers,
        version=version,
        method=method,
        keep_alive=keep_alive,
        server="greenhorn-test",
        known_length=known_length,
    )
    assert head.endswith(b"\r\n\r\n")
    assert head.count(b"\r\n\r\n") == 1
    return head.decode("latin-1"), framing, sent


def header_lines(head: str) -> list[str]:
    """The field lines of a head (status line and final blank line removed)."""
    return head.split("\r\n")[1:-2]


def names(head: str) -> list[str]:
    return [line.split(":", 1)[0].lower() for line in header_lines(head)]


def value(head: str, name: str) -> str | None:
    for line in header_lines(head):
        field, _, val = line.partition(": ")
        if field.lower() == name.lower():
            return val
    return None


# -- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["200 OK", "404 Not Found", "599 Custom Reason", "200 ", "200 Ca\xe7a va", "201 A\tB"]
)
def test_valid_status_is_sent_verbatim(status):
    head, _, _ = run(status)
    assert head.startswith(f"HTTP/1.1 {status}\r\n")


@pytest.mark.parametrize(
    "status",
    [
        "",
        "200",
        "OK",
        "20 OK",
        "2000 OK",
        "099 Low",
        "abc OK",
        " 200 OK",
        "200OK",
        "200 OK\r\nX-Injected: 1",
        "200 OK\n",
        "200 OK\r",
        "200 O\x00K",
        "200 O\x7fK",
        "200 \u20acuro",
        200,
        b"200 OK",
        None,
    ],
)
def test_bad_status_is_refused(status):
    with pytest.raises(InvalidResponse):
        run(status)


# -- header validation: response splitting can never happen -----------------------------


@pytest.mark.parametrize(
    "val",
    [
        "a\r\nX-Injected: 1",
        "a\nX-Injected: 1",
        "a\rb",
        "a\x00b",
        "a\x01b",
        "a\x0bb",
        "a\x1fb",
        "a\x7fb",
        "a\u2028b",
        "\r\n",
    ],
)
def test_control_characters_in_a_value_are_refused(val):
    with pytest.raises(InvalidResponse):
        run(headers=[("X-Test", val)])


@pytest.mark.parametrize("val", ["\u20ac", "\u0100", "snow \u2603", "\U0001f600"])
def test_non_latin1_value_is_refused(val):
    with pytest.raises(InvalidResponse):
        run(headers=[("X-Test", val)])


@pytest.mark.parametrize("val", ["", "plain", "tab\tinside", "caf\xe9 obs-text \x80\xff", "a  b"])
def test_allowed_values_are_sent_verbatim(val):
    head, _, sent = run(headers=[("X-Test", val)])
    assert f"\r\nX-Test: {val}\r\n" in head
    assert ("X-Test", val) in sent


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Bad Name",
        "Bad:Name",
        "X\r\nInjected",
        "X\nY",
        "X\x00",
        "(paren)",
        "a/b",
        'quote"d',
        "Na\xefve",
        "X-\u20ac",
        " X",
        "X ",
    ],
)
def test_non_token_name_is_refused(name):
    with pytest.raises(InvalidResponse):
        run(headers=[(name, "v")])


@pytest.mark.parametrize("name", ["X-Custom", "x_under", "!#$%&'*+-.^_`|~09azAZ"])
def test_token_names_are_sent_verbatim(name):
    head, _, _ = run(headers=[(name, "v")])
    assert f"\r\n{name}: v\r\n" in head


@pytest.mark.parametrize(
    "item", [(b"X-Test", "v"), ("X-Test", b"v"), ("X-Test", 1), (None, "v"), ("X-Test", None)]
)
def test_non_str_name_or_value_is_refused(item):
    with pytest.raises(InvalidResponse):
        run(headers=[item])


@pytest.mark.parametrize("item", [("X-Test", "v", "extra"), ("X-Test",), None])
def test_malformed_header_item_is_refused_as_invalid_response(item):
    with pytest.raises(InvalidResponse):
        run(headers=[item])


def test_a_bad_header_after_good_ones_still_refuses_the_whole_response():
    with pytest.raises(InvalidResponse):
        run(headers=[("X-Good", "1"), ("X-Bad", "a\r\nb")])


_TEXT = st.text(st.characters(max_codepoint=0x3000), max_size=12)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(name=st.sampled_from(["X-Test", "Set-Cookie", "Content-Length"]) | _TEXT, val=_TEXT)
def test_no_header_can_split_the_response(name, val):
    try:
        head, _, _ = run(headers=[(name, val)])
    except InvalidResponse:
        return
    lines = head.split("\r\n")
    assert lines[-2:] == ["", ""]
    for line in lines[:-2]:
        assert "\r" not in line and "\n" not in line and "\x00" not in line
    if name.lower() not in HOP_BY_HOP:
        assert f"{name}: {val}" in lines


# -- hop-by-hop headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Connection",
        "connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Connection",
        "Proxy-Authenticate",
        "Proxy-Authorization",
    ],
)
def test_hop_by_hop_headers_from_the_app_are_dropped(name):
    head, _, sent = run(headers=[(name, "keep-alive"), ("Content-Length", "0")])
    assert name.lower() not in names(head)
    assert all(n.lower() != name.lower() for n, _ in sent)


def test_app_transfer_encoding_does_not_duplicate_the_servers():
    head, framing, _ = run(headers=[("Transfer-Encoding", "chunked")])
    assert framing.chunked
    assert names(head).count("transfer-encoding") == 1


@pytest.mark.parametrize("val", ["close", "Close", "keep-alive, close"])
def test_app_connection_close_is_honoured(val):
    head, framing, sent = run(headers=[("Connection", val), ("Content-Length", "2")])
    assert framing.keep_alive is False
    assert value(head, "Connection") == "close"
    assert names(head).count("connection") == 1
    assert ("Connection", val) not in sent


def test_app_connection_keep_alive_cannot_override_the_server():
    head, framing, _ = run(headers=[("Connection", "keep-alive")], keep_alive=False)
    assert framing.keep_alive is False
    assert value(head, "Connection") == "close"


# -- framing ------------------------------------------------------------------------------


def test_app_content_length_is_kept():
    head, framing, sent = run(headers=[("Content-Length", "5")], known_length=9)
    assert value(head, "Content-Length") == "5"
    assert names(head).count("content-length") == 1
    assert (framing.length, framing.chunked, framing.keep_alive) == (5, False, True)
    assert ("Content-Length", "5") in sent


def test_known_length_is_used_when_the_app_gave_none():
    head, framing, sent = run(known_length=7)
    assert value(head, "Content-Length") == "7"
    assert "transfer-encoding" not in names(head)
    assert (framing.length, framing.chunked, framing.keep_alive) == (7, False, True)
    assert ("Content-Length", "7") in sent


@pytest.mark.parametrize("val", ["abc", "-1", "1.0", "", "0x10", "+5", "\u0663"])
def test_invalid_app_content_length_is_refused(val):
    with pytest.raises(InvalidResponse):
        run(headers=[("Content-Length", val)])


def test_two_content_lengths_are_refused():
    with pytest.raises(InvalidResponse):
        run(headers=[("Content-Length", "5"), ("content-length", "5")])


def test_http11_keep_alive_without_length_is_chunked():
    head, framing, _ = run()
    assert value(head, "Transfer-Encoding") == "chunked"
    assert (framing.length, framing.chunked, framing.keep_alive) == (None, True, True)
    assert framing.body_allowed
    assert "connection" not in names(head)


def test_http11_without_keep_alive_and_length_is_chunked_and_closes():
    # issue 19: a close-delimited body cut short looks complete; a chunked one lacks its
    # last chunk, so HTTP/1.1 responses of unknown length are chunked also when closing
    head, framing, _ = run(keep_alive=False)
    assert value(head, "Transfer-Encoding") == "chunked"
    assert (framing.chunked, framing.keep_alive) == (True, False)
    assert value(head, "Connection") == "close"


def test_http10_without_length_is_close_delimited_even_with_keep_alive():
    head, framing, _ = run(version=(1, 0), keep_alive=True)
    assert "transfer-encoding" not in names(head)
    assert (framing.chunked, framing.keep_alive) == (False, False)
    assert value(head, "Connection") == "close"


def test_http10_keep_alive_with_length_says_keep_alive():
    head, framing, _ = run(version=(1, 0), keep_alive=True, known_length=3)
    assert framing.keep_alive is True
    assert value(head, "Connection") == "keep-alive"


def test_http11_keep_alive_sends_no_connection_header():
    head, framing, _ = run(known_length=3)
    assert framing.keep_alive is True
    assert "connection" not in names(head)


def test_http11_without_keep_alive_says_close_even_with_length():
    head, framing, _ = run(keep_alive=False, known_length=3)
    assert framing.keep_alive is False
    assert value(head, "Connection") == "close"


def test_head_has_no_body_and_is_not_chunked():
    head, framing, _ = run(method="HEAD")
    assert framing.body_allowed is False
    assert framing.chunked is False
    assert framing.keep_alive is True
    assert "transfer-encoding" not in names(head)


def test_head_keeps_the_content_length_of_the_get():
    head, framing, _ = run(method="HEAD", known_length=5)
    assert value(head, "Content-Length") == "5"
    assert framing.body_allowed is False


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified", "100 Continue", "103 X"])
def test_no_body_statuses(status):
    head, framing, _ = run(status)
    assert framing.body_allowed is False
    assert framing.chunked is False
    assert framing.keep_alive is True
    assert "transfer-encoding" not in names(head)


@pytest.mark.parametrize("status", ["204 No Content", "101 Switching Protocols", "103 Early"])
def test_content_length_on_204_or_1xx_is_refused(status):
    with pytest.raises(InvalidResponse):
        run(status, [("Content-Length", "0")])


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_known_length_is_not_added_to_204_or_304(status):
    head, _, _ = run(status, known_length=0)
    assert "content-length" not in names(head)


def test_304_may_carry_the_apps_content_length():
    head, framing, _ = run("304 Not Modified", [("Content-Length", "42")])
    assert value(head, "Content-Length") == "42"
    assert framing.body_allowed is False


# -- Date and Server ----------------------------------------------------------------------


def test_date_and_server_are_added():
    head, _, sent = run(known_length=0)
    assert IMF_FIXDATE.fullmatch(value(head, "Date") or "")
    assert value(head, "Server") == "greenhorn-test"
    assert names(head).count("date") == names(head).count("server") == 1


def test_app_date_and_server_are_not_duplicated():
    headers = [("date", "Thu, 01 Jan 2015 00:00:00 GMT"), ("SERVER", "mine")]
    head, _, sent = run(headers=headers, known_length=0)
    assert names(head).count("date") == 1
    assert names(head).count("server") == 1
    assert value(head, "date") == "Thu, 01 Jan 2015 00:00:00 GMT"
    assert value(head, "server") == "mine"
    assert sent[:2] == headers


def test_sent_headers_keep_the_apps_order_and_case():
    headers = [("X-B", "2"), ("x-a", "1"), ("Content-Type", "text/plain")]
    head, _, sent = run(headers=headers)
    assert sent == headers
    assert header_lines(head)[:3] == ["X-B: 2", "x-a: 1", "Content-Type: text/plain"]


# -- http_date ----------------------------------------------------------------------------


def test_http_date_is_imf_fixdate():
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110 §5.6.7
    assert http_date(1700000000.9) == "Tue, 14 Nov 2023 22:13:20 GMT"


@given(st.integers(min_value=0, max_value=253402300799))  # up to 9999-12-31
def test_http_date_matches_the_email_package(second):
    assert http_date(second) == formatdate(second, usegmt=True)


def test_http_date_defaults_to_now():
    before = int(time.time())
    got = http_date()
    after = int(time.time())
    assert got in {formatdate(t, usegmt=True) for t in range(before, after + 1)}
    assert IMF_FIXDATE.fullmatch(got)


def test_http_date_is_cached_per_second():
    first = http_date(1234567890.01)
    assert http_date(1234567890.99) is first
    assert http_date(1234567891.0) != first
    assert http_date(1234567890.5) == first


def test_http_date_of_the_epoch_in_a_fresh_process():
    code = "from greenhorn.http.response import http_date; print(repr(http_date(0)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.strip() == repr("Thu, 01 Jan 1970 00:00:00 GMT")


# -- error_response -----------------------------------------------------------------------


def parse_complete(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, colon, val = line.partition(": ")
        assert colon, line
        assert name.lower() not in fields
        fields[name.lower()] = val
    return lines[0], fields, body


@pytest.mark.parametrize(
    "code, reason, message",
    [
        (400, "Bad Request", "invalid header"),
        (408, "Request Timeout", ""),
        (414, "URI Too Long", "request line over 4094 bytes"),
        (500, "Internal Server Error", ""),
        (505, "HTTP Version Not Supported", "HTTP/2.0 is not supported"),
        (400, "Bad Request", "multi\r\nline\r\n\r\nHTTP/1.1 200 OK"),
    ],
)
def test_error_response_is_complete_and_closes(code, reason, message):
    raw = error_response(code, reason, message, "greenhorn-test")
    status, fields, body = parse_complete(raw)
    assert status == f"HTTP/1.1 {code} {reason}"
    assert int(fields["content-length"]) == len(body)
    assert fields["connection"] == "close"
    assert fields["server"] == "greenhorn-test"
    assert IMF_FIXDATE.fullmatch(fields["date"])
    assert fields["content-type"].startswith("text/plain")
    assert body.startswith(f"{code} {reason}\n".encode())
    assert message.encode() in body


# -- chunk framing ------------------------------------------------------------------------


def test_chunk_framing():
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert chunk(b"\r\n") == b"2\r\n\r\n\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"
