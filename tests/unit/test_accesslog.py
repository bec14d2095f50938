"""Access-line rendering: every gunicorn atom, escaping, JSON lines, timestamp caches.

Expected strings were taken from gunicorn 27.0.1's own output for the same request (except
for backslashes and control characters, which greenhorn escapes and gunicorn does not).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from types import SimpleNamespace

import pytest

from greenhorn.observe.accesslog import (
    DEFAULT_FORMAT,
    AccessFormat,
    Clock,
    basic_auth_user,
    escape,
    format_keys,
    json_line,
    json_record,
)


def make_req(**overrides):
    fields = {
        "method": "GET",
        "uri": "/a/b?x=1&y=2",
        "path": "/a/b",
        "query": "x=1&y=2",
        "version": (1, 1),
        "headers": [
            ("HOST", "example.test"),
            ("X-TEST", 'he said "hi"'),
            ("REFERER", "http://r/"),
            ("USER-AGENT", "UA/1"),
        ],
        "accepted_at": 100.0,
        "started_at": 100.25,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def make_resp(**overrides):
    fields = {
        "status": "200 OK",
        "status_code": 200,
        "headers": [("Content-Type", "text/plain"), ("X-Out", 'a"b')],
        "sent": 5,
        "response_length": 5,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def make_environ(**overrides):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/a/b",
        "QUERY_STRING": "x=1&y=2",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "RAW_URI": "/a/b?x=1&y=2",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "51606",
        "HTTP_REFERER": "http://r/",
        "HTTP_USER_AGENT": "UA/1",
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"bob:secret").decode(),
    }
    environ.update(overrides)
    return environ


def render(fmt, request_time=0.000558, req=None, resp=None, environ=None):
    return AccessFormat(fmt).render(
        req or make_req(), resp or make_resp(), environ or make_environ(), request_time
    )


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "127.0.0.1"),
        ("l", "-"),
        ("u", "bob"),
        ("r", "GET /a/b?x=1&y=2 HTTP/1.1"),
        ("m", "GET"),
        ("U", "/a/b"),
        ("q", "x=1&y=2"),
        ("H", "HTTP/1.1"),
        ("s", "200"),
        ("B", "5"),
        ("b", "5"),
        ("f", "http://r/"),
        ("a", "UA/1"),
        ("T", "0"),
        ("D", "558"),
        ("M", "0"),
        ("L", "0.000558"),
        ("p", "<PID>"),
        ("{x-test}i", 'he said \\"hi\\"'),
        ("{X-Test}i", 'he said \\"hi\\"'),
        ("{x-out}o", 'a\\"b'),
        ("{content-type}o", "text/plain"),
        ("{remote_port}e", "51606"),
        ("{REMOTE_PORT}e", "51606"),
        ("{nope}i", "-"),
        ("{nope}o", "-"),
        ("{nope}e", "-"),
        ("zz", "-"),
    ],
)
def test_each_atom_renders_like_gunicorn(atom, expected):
    assert render(f"%({atom})s") == expected.replace("PID", str(os.getpid()))


def test_t_atom_is_clf_local_time():
    before = Clock().clf(time.time())
    line = render("%(t)s")
    assert line in {before, Clock().clf(time.time())}
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", line)


def test_default_format_matches_gunicorn_layout():
    assert DEFAULT_FORMAT == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    line = render(DEFAULT_FORMAT)
    stamp = line.split(" ", 3)[3].split("]")[0] + "]"
    assert line == f'127.0.0.1 - bob {stamp} "GET /a/b?x=1&y=2 HTTP/1.1" 200 5 "http://r/" "UA/1"'


def test_missing_environ_entries_render_as_dash():
    environ = make_environ()
    for key in ("REMOTE_ADDR", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION"):
        del environ[key]
    assert render("%(h)s %(u)s %(f)s %(a)s", environ=environ) == "- - - -"


def test_empty_query_renders_empty_like_gunicorn():
    environ = make_environ(QUERY_STRING="")
    assert render("[%(q)s]", environ=environ) == "[]"


def test_zero_byte_body_b_is_zero_like_gunicorn():
    assert render("%(b)s %(B)s", resp=make_resp(sent=0)) == "0 0"


def test_durations_are_derived_from_rounded_microseconds():
    assert render("%(T)s %(D)s %(M)s %(L)s", request_time=1.2345678) == "1 1234568 1234 1.234568"
    assert render("%(T)s %(D)s %(M)s %(L)s", request_time=0.0) == "0 0 0 0.000000"


def test_numeric_atoms_accept_numeric_conversions():
    assert render("%(B)d %(D)06d %(M)d %(T)d", request_time=0.002) == "5 002000 2 0"


def test_percent_literal_and_width_flags_survive():
    assert render("100%% %(s)5s|%(m)-4s|") == "100%   200|GET |"


def test_invalid_format_fails_at_construction():
    with pytest.raises(ValueError, match="access_log_format"):
        AccessFormat("%(h)d")
    with pytest.raises(ValueError, match="access_log_format"):
        AccessFormat("%(h)s %(")


def test_format_keys_skips_escaped_percent():
    assert format_keys('%%(x)s %(h)s "%(r)s" %(h)s %({a-b}i)s') == ["h", "r", "{a-b}i"]


def test_atoms_not_in_format_are_never_computed():
    class Exploding:
        def __getattr__(self, name):
            raise AssertionError(f"resp.{name} read although the format does not use it")

    req = make_req()
    line = AccessFormat("%(h)s %(m)s").render(req, Exploding(), make_environ(), 0.1)
    assert line == "127.0.0.1 GET"
    assert AccessFormat("%(h)s %(r)s %(t)s").keys == ("h", "r", "t")


def test_last_duplicate_header_wins_like_gunicorn():
    req = make_req(headers=[("X-TEST", "one"), ("X-TEST", "two")])
    resp = make_resp(headers=[("Set-Cookie", "a=1"), ("set-cookie", "b=2")])
    assert render("%({x-test}i)s %({set-cookie}o)s", req=req, resp=resp) == "two b=2"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain /path?x=1", "plain /path?x=1"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\r\nb", "a\\r\\nb"),
        ("a\tb", "a\\tb"),
        ("a\x00b\x01c\x1b[31m", "a\\x00b\\x01c\\x1b[31m"),
        ("del\x7f", "del\\x7f"),
        ("nel\x85", "nel\\x85"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("caf\xe9", "caf\xe9"),
    ],
)
def test_escape(raw, escaped):
    assert escape(raw) == escaped


def test_request_line_with_crlf_and_quote_stays_on_one_line():
    req = make_req(uri='/x\r\n127.0.0.1 - - "GET /forged HTTP/1.1" 200')
    line = render(DEFAULT_FORMAT, req=req)
    assert "\n" not in line and "\r" not in line
    assert '"GET /x\\r\\n127.0.0.1 - - \\"GET /forged HTTP/1.1\\" 200 HTTP/1.1"' in line


def test_client_controlled_atoms_are_escaped():
    environ = make_environ(
        HTTP_USER_AGENT='evil"\nUA',
        HTTP_REFERER="r\x01",
        PATH_INFO="/p\r\n",
        QUERY_STRING='q"',
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b'ev"il\n:pw').decode(),
    )
    req = make_req(headers=[("X-TEST", "v\x07\\")])
    line = render("%(a)s|%(f)s|%(U)s|%(q)s|%(u)s|%({x-test}i)s", req=req, environ=environ)
    assert line == 'evil\\"\\nUA|r\\x01|/p\\r\\n|q\\"|ev\\"il\\n|v\\x07\\\\'


def test_environ_values_that_are_not_strings_are_stringified():
    environ = make_environ(**{"wsgi.version": (1, 0), "custom": 7})
    assert render("%({wsgi.version}e)s %({custom}e)s", environ=environ) == "(1, 0) 7"


@pytest.mark.parametrize(
    ("header", "user"),
    [
        ("Basic " + base64.b64encode(b"bob:secret").decode(), "bob"),
        ("basic " + base64.b64encode(b"alice").decode(), "alice"),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"\xe9t\xe9:x").decode(), None),
        ("Bearer abc", None),
        ("Basic", None),
        ("", None),
    ],
)
def test_basic_auth_user(header, user):
    assert basic_auth_user({"HTTP_AUTHORIZATION": header}) == user


def test_protocol_falls_back_to_request_version():
    environ = make_environ()
    del environ["SERVER_PROTOCOL"]
    assert render("%(H)s|%(r)s", req=make_req(version=(1, 0)), environ=environ) == (
        "HTTP/1.0|GET /a/b?x=1&y=2 HTTP/1.0"
    )


@pytest.fixture
def india_time(monkeypatch):
    """A fixed +05:30 zone given as a POSIX TZ string (needs no tz database)."""
    monkeypatch.setenv("TZ", "IST-05:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_clf_time_uses_local_offset(india_time):
    assert Clock().clf(0.0) == "[01/Jan/1970:05:30:00 +0530]"
    assert Clock().clf(1795611901.9) == "[25/Nov/2026:18:35:01 +0530]"


def test_clock_caches_per_second():
    clock = Clock()
    first = clock.clf(1000.1)
    assert clock.clf(1000.9) is first
    assert clock.clf(1001.0) is not first
    assert clock.iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert clock.iso(1795611901.5) == "2026-11-25T13:05:01.500Z"
    assert clock.iso(1795611901.9999) == "2026-11-25T13:05:01.999Z"


JSON_KEYS = {
    "time",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "duration_ms",
    "remote_addr",
    "remote_port",
    "worker_pid",
    "user_agent",
    "referer",
    "request_id",
    "queue_ms",
}


def test_json_record_fields():
    req = make_req(headers=[*make_req().headers, ("X-REQUEST-ID", "abc-123")])
    record = json_record(req, make_resp(status_code=201), make_environ(), 0.0125, Clock())
    assert set(record) == JSON_KEYS
    assert record["method"] == "GET"
    assert record["path"] == "/a/b"
    assert record["query"] == "x=1&y=2"
    assert record["protocol"] == "HTTP/1.1"
    assert record["status"] == 201
    assert record["bytes"] == 5
    assert record["duration_ms"] == 12.5
    assert record["remote_addr"] == "127.0.0.1"
    assert record["remote_port"] == 51606
    assert record["worker_pid"] == os.getpid()
    assert record["user_agent"] == "UA/1"
    assert record["referer"] == "http://r/"
    assert record["request_id"] == "abc-123"
    assert record["queue_ms"] == 250.0
    assert record["time"].endswith("Z") and record["time"][10] == "T"


def test_json_record_absent_fields_are_null():
    req = make_req(headers=[])
    environ = make_environ()
    del environ["REMOTE_PORT"], environ["REMOTE_ADDR"]
    record = json_record(req, make_resp(), environ, 0.0, Clock())
    assert set(record) == JSON_KEYS
    for key in ("remote_addr", "remote_port", "user_agent", "referer", "request_id"):
        assert record[key] is None


def test_json_line_is_one_parseable_line_even_with_hostile_values():
    req = make_req(
        uri="/x",
        path='/x"\r\n{"forged":1}',
        headers=[("USER-AGENT", "ua\n\x00\u2028"), ("X-REQUEST-ID", "\\id")],
    )
    line = json_line(req, make_resp(), make_environ(), 0.001, Clock())
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    parsed = json.loads(line)
    assert parsed["path"] == '/x"\r\n{"forged":1}'
    assert parsed["user_agent"] == "ua\n\x00\u2028"
    assert parsed["request_id"] == "\\id"
    assert set(parsed) == JSON_KEYS
