"""Converters in greenhorn.config.converters: what they accept, normalise and refuse."""

from __future__ import annotations

import collections
import grp
import os
import pwd
import ssl

import pytest

from greenhorn.config import converters as t
from greenhorn.config.setting import Warned


def refused(convert, value) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        convert(value)
    return str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("true", True), ("FALSE", False), (" yes ", True),
     ("off", False), ("1", True), ("0", False)],
)  # fmt: skip
def test_to_bool_accepts(raw, expected):
    assert t.to_bool(raw) is expected


@pytest.mark.parametrize("raw", ["maybe", "", 1, None, 2.0])
def test_to_bool_refuses(raw):
    assert "true or false" in refused(t.to_bool, raw)


def test_int_range_parses_and_bounds():
    conv = t.int_range(0, 8190)
    assert conv("4094") == 4094 and conv(" 0 ") == 0 and conv(8190) == 8190
    # gunicorn reads numbers with int(text, 0): hex, octal and binary spellings too
    assert (conv("0x10"), conv("0o17"), conv("0b11"), conv("1_000")) == (16, 15, 3, 1000)
    for bad in ("8191", "-1", "abc", "1.5", "0x", True, 1.0, None, ""):
        assert "from 0 to 8190" in refused(conv, bad)


def test_int_range_lower_bound_only():
    assert t.int_range(1)("7") == 7
    assert "expected an integer >= 1" in refused(t.int_range(1), "0")


def test_optional_accepts_none_and_none_strings():
    conv = t.optional(t.int_range(1))
    assert conv(None) is None and conv("none") is None and conv("") is None
    assert conv("512") == 512
    refused(conv, "0")


def test_float_min():
    conv = t.float_min(0)
    assert conv("2.5") == 2.5 and conv(3) == 3.0 and conv(0) == 0.0
    for bad in ("-0.1", "nan", "inf", "abc", True, None):
        refused(conv, bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(18, 18), ("18", 18), ("022", 0o22), ("0o22", 0o22), ("0O022", 0o22), ("0x12", 18),
     ("0", 0), ("0777", 0o777)],
)  # fmt: skip
def test_to_octal_parses_like_gunicorn(raw, expected):
    assert t.to_octal(raw) == expected


@pytest.mark.parametrize("raw", ["0o1000", "-1", "abc", "089", True, 1.5, 0o1000])
def test_to_octal_refuses(raw):
    refused(t.to_octal, raw)


def test_choice_is_case_insensitive_and_lists_choices():
    conv = t.choice("drop", "refuse", "dangerous")
    assert conv(" Refuse ") == "refuse"
    assert "drop, refuse, dangerous" in refused(conv, "keep")


def test_str_list_and_comma_list():
    assert t.str_list("a") == ["a"]
    assert t.str_list(["a", " b "]) == ["a", "b"]
    assert t.str_list(None) == []
    assert t.comma_list("a, b,,c") == ["a", "b", "c"]
    assert t.comma_list(("x",)) == ["x"]
    assert t.upper_comma_list("script_name,path_info") == ["SCRIPT_NAME", "PATH_INFO"]
    refused(t.str_list, 5)


def test_addr_list_accepts_ips_networks_and_star():
    assert t.addr_list("127.0.0.1, ::1,10.0.0.0/8,*") == ["127.0.0.1", "::1", "10.0.0.0/8", "*"]
    assert t.addr_list(["192.168.0.0/16"]) == ["192.168.0.0/16"]
    assert "not an IP address" in refused(t.addr_list, "localhost")
    refused(t.addr_list, "192.168.1.1/24")  # host bits set: a likely mistake


@pytest.mark.parametrize(
    "addr",
    ["127.0.0.1:8000", "0.0.0.0:0", ":8000", "localhost", "example.com:80", "[::1]:8000",
     "[::]", "tcp://127.0.0.1:80", "unix:/tmp/g.sock", "unix:///tmp/g.sock", "fd://3"],
)  # fmt: skip
def test_bind_accepts(addr):
    assert t.bind_list([addr]) == [addr]


@pytest.mark.parametrize(
    "addr",
    [":99999", "127.0.0.1:http", "127.0.0.1:", "::1:8000", "[::1", "[nope]:80", "unix:",
     "fd://x", "host name:80"],
)  # fmt: skip
def test_bind_refuses(addr):
    assert repr(addr) in refused(t.bind_list, [addr])


def test_bind_single_string_and_empty():
    assert t.bind_list("127.0.0.1:1") == ["127.0.0.1:1"]
    refused(t.bind_list, [])


def test_host_port_requires_a_port():
    assert t.host_port("127.0.0.1:9100") == "127.0.0.1:9100"
    assert t.host_port(":9100") == ":9100"
    for bad in ("127.0.0.1", "unix:/tmp/x", "fd://3", ":70000"):
        refused(t.host_port, bad)


def test_env_list():
    assert t.env_list(["A=1", "B="]) == ["A=1", "B="]
    assert t.env_list("A=1") == ["A=1"]
    assert "KEY=VALUE" in refused(t.env_list, ["NOEQUALS"])
    refused(t.env_list, ["=value"])


def test_header_dict_uppercases_names():
    assert t.header_dict({"x-forwarded-proto": "https"}) == {"X-FORWARDED-PROTO": "https"}
    refused(t.header_dict, "X-FORWARDED-PROTO: https")
    refused(t.header_dict, {"X": 1})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("sync", "sync"), ("GTHREAD", "gthread"), ("gevent", "gevent"), ("eventlet", "eventlet"),
     ("egg:gunicorn#gthread", "gthread"), ("#sync", "sync"), ("tornado", "tornado"),
     ("gunicorn.workers.gthread.ThreadWorker", "gunicorn.workers.gthread.ThreadWorker"),
     ("mypkg.workers.Custom", "mypkg.workers.Custom")],
)  # fmt: skip
def test_worker_class_spellings(raw, expected):
    """Only the spelling: which names exist is the registry's (tests/unit/test_registry.py)."""
    assert t.worker_class(raw) == expected


def test_worker_class_accepts_an_importable_class_object():
    assert t.worker_class(collections.OrderedDict) == "collections.OrderedDict"


def test_worker_class_refuses_a_class_that_cannot_be_imported_by_name():
    class Custom:
        pass

    assert "not importable" in refused(t.worker_class, Custom)


@pytest.mark.parametrize("raw", ["", "my pkg.Worker", "1abc.Worker", "a-b"])
def test_worker_class_refuses(raw):
    refused(t.worker_class, raw)


def test_logger_class():
    assert t.logger_class("simple") == t.DEFAULT_LOGGER
    assert t.logger_class("gunicorn.glogging.Logger") == t.DEFAULT_LOGGER
    assert t.logger_class("pkg.mod.Logger") == "pkg.mod.Logger"
    refused(t.logger_class, "Logger")


def test_workers():
    assert t.workers("4") == 4 and t.workers(2) == 2 and t.workers("AUTO") == "auto"
    for bad in ("-1", "abc", "", True, 2.0):
        assert "'auto'" in refused(t.workers, bad)
    # gunicorn accepts 0 and then serves nothing: greenhorn runs 1 and says so
    zero = t.workers("0")
    assert isinstance(zero, Warned) and zero.value == 1 and "TTIN" in zero.message


def test_loglevel_reads_warn_and_unknown_words_as_gunicorn_accepts_them():
    assert t.loglevel("WARN") == "warning" and t.loglevel("Debug") == "debug"
    unknown = t.loglevel("verbose")
    assert isinstance(unknown, Warned) and unknown.value == "info"


def test_app_uri_checks_syntax_only():
    assert t.app_uri(" mod:app ") == "mod:app"
    assert t.app_uri(None) is None
    refused(t.app_uri, "mod:create(x)")


def test_user_and_group_resolve_names_and_numbers():
    me = pwd.getpwuid(os.geteuid())
    assert t.user_id(me.pw_name) == me.pw_uid
    assert t.user_id(str(me.pw_uid)) == me.pw_uid
    assert t.user_id(1234) == 1234
    assert "no such user" in refused(t.user_id, "greenhorn-no-such-user")
    gr = grp.getgrgid(os.getegid())
    assert t.group_id(gr.gr_name) == gr.gr_gid
    assert t.group_id("0") == 0
    assert "no such group" in refused(t.group_id, "greenhorn-no-such-group")


def test_existing_dir(tmp_path):
    assert t.existing_dir(str(tmp_path)) == str(tmp_path.resolve())
    assert "can't chdir" in refused(t.existing_dir, str(tmp_path / "missing"))


def test_files_or_patterns(tmp_path):
    real = tmp_path / "a.txt"
    real.write_text("x")
    pattern = str(tmp_path / "*.html")
    assert t.files_or_patterns([str(real), pattern]) == [str(real), pattern]
    assert "does not exist" in refused(t.files_or_patterns, [str(tmp_path / "nope.txt")])


def test_statsd_address():
    assert t.statsd_address("localhost:8125") == "localhost:8125"
    assert t.statsd_address("localhost") == "localhost"
    assert t.statsd_address("unix:///run/statsd.sock") == "unix:///run/statsd.sock"
    for bad in ("unix://", "host:port", "fd://3"):
        refused(t.statsd_address, bad)


def test_proxy_protocol_normalises_gunicorn_spellings():
    assert [t.proxy_protocol(v) for v in (None, False, True, "TRUE", "0", "v2", "auto")] == [
        "off", "off", "auto", "auto", "off", "v2", "auto",
    ]  # fmt: skip
    refused(t.proxy_protocol, "v3")


def test_ssl_settings():
    # deprecated and ignored, as in gunicorn: any value loads, anything but the default warns
    assert t.ssl_version(2) == 2 and t.ssl_version("TLS") == 2
    assert t.ssl_version("TLS_SERVER") == Warned(
        int(ssl.PROTOCOL_TLS_SERVER), t.SSL_VERSION_IGNORED
    )
    assert t.ssl_version("SSLv99") == Warned(2, t.SSL_VERSION_IGNORED)
    assert t.cert_reqs("2") == 2 and t.cert_reqs("CERT_OPTIONAL") == int(ssl.CERT_OPTIONAL)
    refused(t.cert_reqs, "3")
    refused(t.cert_reqs, "CERT_MAYBE")


def test_syslog_facility_choices():
    conv = t.choice(*t.SYSLOG_FACILITIES)
    assert conv("LOCAL0") == "local0"
    refused(conv, "local9")
