"""greenhorn.observe.logger: error/access handlers, user logging configs, syslog, rotation, stdio."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

import greenhorn.observe.logger as glog
from greenhorn import observe
from greenhorn.observe.accesslog import DEFAULT_FORMAT
from greenhorn.observe.statsd import StatsdLogger

GUNICORN_DEFAULTS = {
    "accesslog": None,
    "access_log_format": DEFAULT_FORMAT,
    "access_log_json": False,
    "errorlog": "-",
    "loglevel": "info",
    "capture_output": False,
    "logconfig": None,
    "logconfig_dict": {},
    "logconfig_json": None,
    "syslog": False,
    "syslog_addr": "udp://localhost:514",
    "syslog_prefix": None,
    "syslog_facility": "user",
    "disable_redirect_access_to_syslog": False,
    "statsd_host": None,
    "statsd_prefix": "",
    "dogstatsd_tags": "",
    "proc_name": None,
    "logger_class": "gunicorn.glogging.Logger",
}
OUR_LOGGERS = ("greenhorn.error", "greenhorn.access", "gunicorn.error", "gunicorn.access")
ERROR_LINE = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[([A-Z]+)\] (.*)", re.DOTALL
)


def make_cfg(**overrides):
    return SimpleNamespace(**{**GUNICORN_DEFAULTS, **overrides})


def make_request():
    req = SimpleNamespace(
        method="GET",
        uri="/hello?x=1",
        path="/hello",
        query="x=1",
        version=(1, 1),
        headers=[("HOST", "h"), ("USER-AGENT", "test-agent")],
        accepted_at=10.0,
        started_at=10.002,
    )
    resp = SimpleNamespace(
        status="200 OK", status_code=200, headers=[("Content-Length", "5")], sent=5
    )
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.1.2.3",
        "REMOTE_PORT": "4242",
        "HTTP_USER_AGENT": "test-agent",
    }
    return req, resp, environ


@pytest.fixture(autouse=True)
def restore_logging():
    """Each test starts from, and leaves, the logging state pytest had."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {}
    for name in OUR_LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
    yield
    keep = {id(h) for h in saved_root[0]}
    for lg in [root, *(logging.getLogger(n) for n in (*OUR_LOGGERS, "app"))]:
        for handler in lg.handlers:
            if id(handler) not in keep:
                handler.close()
    root.handlers = list(saved_root[0])
    root.setLevel(saved_root[1])
    for name, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers = list(handlers)
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled
    logging.getLogger("app").handlers[:] = []


def lines(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


# -- error log --------------------------------------------------------------------------


def test_error_log_line_layout_matches_gunicorn(tmp_path):
    path = tmp_path / "error.log"
    log = glog.Logger(make_cfg(errorlog=str(path)))
    log.info("Listening at: %s (%d)", "http://127.0.0.1:8000", 42)
    [line] = lines(path)
    match = ERROR_LINE.fullmatch(line)
    assert match, line
    assert match.groups() == (str(os.getpid()), "INFO", "Listening at: http://127.0.0.1:8000 (42)")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        ("info", ["INFO", "WARNING", "ERROR", "CRITICAL"]),
        ("warning", ["WARNING", "ERROR", "CRITICAL"]),
        ("ERROR", ["ERROR", "CRITICAL"]),
        ("critical", ["CRITICAL"]),
    ],
)
def test_loglevel_filters_error_log(tmp_path, level, expected):
    path = tmp_path / "error.log"
    log = glog.Logger(make_cfg(errorlog=str(path), loglevel=level))
    for method in ("debug", "info", "warning", "error", "critical"):
        getattr(log, method)("m")
    assert [ERROR_LINE.fullmatch(line).group(2) for line in lines(path)] == expected


def test_log_accepts_level_names_and_numbers(tmp_path):
    path = tmp_path / "error.log"
    log = glog.Logger(make_cfg(errorlog=str(path)))
    log.log("warning", "by name %s", 1)
    log.log(logging.ERROR, "by number")
    assert [ERROR_LINE.fullmatch(x).group(2, 3) for x in lines(path)] == [
        ("WARNING", "by name 1"),
        ("ERROR", "by number"),
    ]


def test_exception_includes_traceback(tmp_path):
    path = tmp_path / "error.log"
    log = glog.Logger(make_cfg(errorlog=str(path)))
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        log.exception("Error handling request")
    text = path.read_text()
    assert "[ERROR] Error handling request\nTraceback (most recent call last):" in text
    assert "ZeroDivisionError: boom" in text


def test_error_log_dash_is_stderr(capsys):
    log = glog.Logger(make_cfg())
    log.warning("to stderr")
    out, err = capsys.readouterr()
    assert out == ""
    assert ERROR_LINE.fullmatch(err.strip()).group(2, 3) == ("WARNING", "to stderr")


def test_invalid_loglevel_is_rejected():
    with pytest.raises(glog.LogConfigError, match="loglevel"):
        glog.Logger(make_cfg(loglevel="verbose"))


def test_unwritable_error_log_is_a_config_error(tmp_path):
    with pytest.raises(glog.LogConfigError, match="cannot open log file"):
        glog.Logger(make_cfg(errorlog=str(tmp_path / "missing-dir" / "e.log")))


def test_setup_again_does_not_duplicate_lines(tmp_path):
    path = tmp_path / "error.log"
    cfg = make_cfg(errorlog=str(path))
    log = glog.Logger(cfg)
    log.setup(cfg)
    glog.Logger(cfg).setup(cfg)
    log.info("once")
    assert len(lines(path)) == 1


def test_gunicorn_logger_names_share_greenhorn_handlers(tmp_path):
    path = tmp_path / "error.log"
    glog.Logger(make_cfg(errorlog=str(path)))
    logging.getLogger("gunicorn.error").info("app code using gunicorn's logger")
    assert lines(path)[0].endswith("[INFO] app code using gunicorn's logger")
    assert (
        logging.getLogger("gunicorn.error").handlers
        == logging.getLogger("greenhorn.error").handlers
    )


def test_handler_added_later_to_gunicorn_name_is_used(tmp_path):
    errors, extra = tmp_path / "error.log", tmp_path / "extra.log"
    log = glog.Logger(make_cfg(errorlog=str(errors)))
    handler = logging.FileHandler(extra)
    handler.setFormatter(logging.Formatter("extra %(message)s"))
    logging.getLogger("gunicorn.error").addHandler(handler)
    log.info("both")
    assert lines(extra) == ["extra both"]
    assert lines(errors)[0].endswith("[INFO] both")


def test_user_config_naming_both_spellings_keeps_them_apart(tmp_path):
    ours, theirs = tmp_path / "ours.log", tmp_path / "theirs.log"
    config = {
        "formatters": {"bare": {"format": "%(message)s"}},
        "handlers": {"o": file_handler(ours), "t": file_handler(theirs)},
        "loggers": {
            "greenhorn.error": {"handlers": ["o"], "level": "INFO"},
            "gunicorn.error": {"handlers": ["t"], "level": "INFO"},
        },
        "root": {"handlers": [], "level": "WARNING"},
    }
    cfg = make_cfg(logconfig_dict=config)
    log = glog.Logger(cfg)
    log.setup(cfg)  # a reload must not mix the two handler sets
    log.info("mine")
    logging.getLogger("gunicorn.error").info("app")
    assert lines(ours) == ["mine"]
    assert lines(theirs) == ["app"]


# -- access log -------------------------------------------------------------------------


def test_access_log_file_default_format(tmp_path):
    path = tmp_path / "access.log"
    log = glog.Logger(make_cfg(accesslog=str(path)))
    assert log.access_enabled
    log.access(*make_request(), 0.002)
    [line] = lines(path)
    assert re.fullmatch(
        r'10\.1\.2\.3 - - \[[^\]]+\] "GET /hello\?x=1 HTTP/1\.1" 200 5 "-" "test-agent"', line
    ), line


def test_access_log_custom_format(tmp_path):
    path = tmp_path / "access.log"
    log = glog.Logger(make_cfg(accesslog=str(path), access_log_format="%(s)s %(D)s %(p)s"))
    log.access(*make_request(), 0.25)
    assert lines(path) == [f"200 250000 <{os.getpid()}>"]


def test_access_log_dash_is_stdout(capsys):
    log = glog.Logger(make_cfg(accesslog="-", access_log_format="%(m)s %(U)s"))
    log.access(*make_request(), 0.01)
    out, err = capsys.readouterr()
    assert out == "GET /hello\n"
    assert err == ""


@pytest.mark.parametrize(
    ("overrides", "enabled"),
    [
        ({}, False),
        ({"accesslog": "-"}, True),
        ({"access_log_json": True}, True),
        ({"syslog": True, "syslog_addr": "udp://127.0.0.1:9"}, True),
        (
            {
                "syslog": True,
                "syslog_addr": "udp://127.0.0.1:9",
                "disable_redirect_access_to_syslog": True,
            },
            False,
        ),
    ],
)
def test_access_enabled(overrides, enabled):
    assert glog.Logger(make_cfg(**overrides)).access_enabled is enabled


def test_disabled_access_log_writes_nothing(capsys, tmp_path):
    log = glog.Logger(make_cfg())
    log.access(*make_request(), 0.01)
    assert capsys.readouterr() == ("", "")


def test_forged_request_line_stays_on_one_escaped_line(tmp_path):
    path = tmp_path / "access.log"
    log = glog.Logger(make_cfg(accesslog=str(path)))
    req, resp, environ = make_request()
    req.uri = '/x\r\n1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200 1 "-" "-'
    environ["HTTP_USER_AGENT"] = 'a"b\\c\x1b'
    log.access(req, resp, environ, 0.0)
    [line] = lines(path)
    assert '"GET /x\\r\\n1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] \\"GET /admin' in line
    assert line.endswith('"a\\"b\\\\c\\x1b"')


def test_access_failure_is_reported_not_raised(tmp_path):
    errors = tmp_path / "error.log"
    access = tmp_path / "access.log"
    log = glog.Logger(make_cfg(errorlog=str(errors), accesslog=str(access)))
    req, _, environ = make_request()
    log.access(req, SimpleNamespace(), environ, 0.0)  # a response without status_code
    assert access.read_text() == ""
    assert "[ERROR] access log failed:" in errors.read_text()
    assert "AttributeError" in errors.read_text()


def test_access_lines_follow_handlers_added_after_setup(tmp_path):
    path, extra = tmp_path / "access.log", tmp_path / "extra.log"
    log = glog.Logger(make_cfg(accesslog=str(path), access_log_format="%(s)s"))
    log.access(*make_request(), 0.0)
    handler = logging.FileHandler(extra)
    logging.getLogger("gunicorn.access").addHandler(handler)
    log.access(*make_request(), 0.0)
    logging.getLogger("gunicorn.access").removeHandler(handler)
    handler.close()
    log.access(*make_request(), 0.0)
    assert lines(path) == ["200", "200", "200"]
    assert lines(extra) == ["200"]


def test_access_log_survives_its_handler_being_closed(tmp_path):
    path = tmp_path / "access.log"
    log = glog.Logger(make_cfg(accesslog=str(path), access_log_format="%(s)s"))
    log.access_log.handlers[0].close()  # e.g. logging.shutdown() run by someone else
    log.access(*make_request(), 0.0)
    assert lines(path) == ["200"]


def test_access_log_respects_a_logger_disabled_later(tmp_path):
    path = tmp_path / "access.log"
    log = glog.Logger(make_cfg(accesslog=str(path)))
    log.access_log.disabled = True  # what dictConfig(disable_existing_loggers=True) does
    log.access(*make_request(), 0.0)
    assert path.read_text() == ""


def test_invalid_access_format_is_a_config_error():
    with pytest.raises(glog.LogConfigError, match="access_log_format"):
        glog.Logger(make_cfg(accesslog="-", access_log_format="%(h)d"))


def test_json_access_log_goes_to_accesslog_file(tmp_path):
    path = tmp_path / "access.log"
    log = glog.Logger(make_cfg(accesslog=str(path), access_log_json=True))
    req, resp, environ = make_request()
    req.headers.append(("X-REQUEST-ID", "rid-1"))
    log.access(req, resp, environ, 0.0042)
    [line] = lines(path)
    record = json.loads(line)
    assert record["request_id"] == "rid-1"
    assert record["status"] == 200
    assert record["duration_ms"] == 4.2
    assert record["remote_addr"] == "10.1.2.3"
    assert record["remote_port"] == 4242
    assert record["queue_ms"] == 2.0
    assert set(record) >= {"time", "method", "path", "query", "protocol", "bytes", "worker_pid"}


def test_json_access_log_without_accesslog_goes_to_stdout(capsys):
    log = glog.Logger(make_cfg(access_log_json=True))
    log.access(*make_request(), 0.001)
    out, _ = capsys.readouterr()
    assert json.loads(out)["path"] == "/hello"


# -- user logging configs ---------------------------------------------------------------


def file_handler(path):
    return {"class": "logging.FileHandler", "filename": str(path), "formatter": "bare"}


def test_logconfig_dict_configures_greenhorn_loggers(tmp_path):
    errors, access = tmp_path / "e.log", tmp_path / "a.log"
    config = {
        "formatters": {"bare": {"format": "%(levelname)s %(message)s"}},
        "handlers": {"e": file_handler(errors), "a": file_handler(access)},
        "loggers": {
            "greenhorn.error": {"handlers": ["e"], "level": "DEBUG"},
            "greenhorn.access": {"handlers": ["a"], "level": "INFO"},
        },
        "root": {"handlers": [], "level": "WARNING"},
    }
    log = glog.Logger(make_cfg(logconfig_dict=config, errorlog=str(tmp_path / "ignored.log")))
    log.debug("dbg")
    assert log.access_enabled
    log.access(*make_request(), 0.0)
    assert lines(errors) == ["DEBUG dbg"]
    assert lines(access)[0].startswith("INFO 10.1.2.3 - - [")
    assert not (tmp_path / "ignored.log").exists()


def test_logconfig_dict_for_gunicorn_names_still_applies(tmp_path):
    errors = tmp_path / "e.log"
    config = {
        "formatters": {"bare": {"format": "%(name)s|%(message)s"}},
        "handlers": {"e": file_handler(errors)},
        "loggers": {"gunicorn.error": {"handlers": ["e"], "level": "INFO", "propagate": False}},
        "root": {"handlers": [], "level": "WARNING"},
    }
    log = glog.Logger(make_cfg(logconfig_dict=config))
    log.info("routed")
    assert lines(errors) == ["greenhorn.error|routed"]


def test_logconfig_dict_is_merged_onto_defaults(capsys):
    # Only "root" is given: the default loggers stay (error -> stderr, access -> stdout),
    # replacing errorlog/accesslog, as gunicorn's shallow merge does.
    log = glog.Logger(make_cfg(logconfig_dict={"root": {"level": "WARNING", "handlers": []}}))
    log.info("hello")
    log.access(*make_request(), 0.0)
    out, err = capsys.readouterr()
    assert ERROR_LINE.fullmatch(err.strip()).group(3) == "hello"
    assert ERROR_LINE.fullmatch(out.strip()).group(3).startswith("10.1.2.3 - - [")


def test_invalid_logconfig_dict_is_a_config_error():
    bad = {"handlers": {"h": {"class": "no.such.Handler"}}}
    with pytest.raises(glog.LogConfigError, match="invalid logging config"):
        glog.Logger(make_cfg(logconfig_dict=bad))


def test_logconfig_json(tmp_path):
    errors = tmp_path / "e.log"
    config = {
        "formatters": {"bare": {"format": "json:%(message)s"}},
        "handlers": {"e": file_handler(errors)},
        "loggers": {"greenhorn.error": {"handlers": ["e"], "level": "INFO"}},
        "root": {"handlers": [], "level": "WARNING"},
    }
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    glog.Logger(make_cfg(logconfig_json=str(path))).warning("w")
    assert lines(errors) == ["json:w"]


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "cannot read"), ("{not json", "invalid JSON"), ("[1, 2]", "JSON object")],
)
def test_bad_logconfig_json(tmp_path, content, match):
    path = tmp_path / "logging.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(glog.LogConfigError, match=match):
        glog.Logger(make_cfg(logconfig_json=str(path)))


def test_logconfig_ini_file(tmp_path):
    access = tmp_path / "a.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            f"""\
            [loggers]
            keys=root,access

            [handlers]
            keys=file

            [formatters]
            keys=bare

            [logger_root]
            level=WARNING
            handlers=

            [logger_access]
            level=INFO
            handlers=file
            propagate=0
            qualname=gunicorn.access

            [handler_file]
            class=FileHandler
            formatter=bare
            args=({str(access)!r}, 'a')

            [formatter_bare]
            format=ini %(message)s
            """
        )
    )
    log = glog.Logger(make_cfg(logconfig=str(ini), access_log_format="%(m)s %(s)s"))
    assert log.access_enabled
    log.access(*make_request(), 0.0)
    assert lines(access) == ["ini GET 200"]


def test_missing_logconfig_ini_is_a_config_error(tmp_path):
    with pytest.raises(glog.LogConfigError, match="not found"):
        glog.Logger(make_cfg(logconfig=str(tmp_path / "nope.ini")))


# -- syslog -----------------------------------------------------------------------------


@pytest.fixture
def udp_listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_syslog_over_udp(udp_listener):
    port = udp_listener.getsockname()[1]
    cfg = make_cfg(
        syslog=True,
        syslog_addr=f"udp://127.0.0.1:{port}",
        syslog_prefix="myapp",
        syslog_facility="local0",
        access_log_format="%(m)s %(U)s %(s)s",
    )
    log = glog.Logger(cfg)
    log.info("hello")
    log.error("bad")
    log.access(*make_request(), 0.0)
    pid = os.getpid()
    assert udp_listener.recv(4096) == f"<134>gunicorn.myapp.error: [{pid}] hello\x00".encode()
    assert udp_listener.recv(4096) == f"<131>gunicorn.myapp.error: [{pid}] bad\x00".encode()
    assert udp_listener.recv(4096) == (
        f"<134>gunicorn.myapp.access: [{pid}] GET /hello 200\x00".encode()
    )


def test_syslog_prefix_defaults_to_proc_name_and_access_can_stay_out(udp_listener, tmp_path):
    port = udp_listener.getsockname()[1]
    access = tmp_path / "access.log"
    cfg = make_cfg(
        syslog=True,
        syslog_addr=f"udp://127.0.0.1:{port}",
        proc_name="app:application",
        disable_redirect_access_to_syslog=True,
        accesslog=str(access),
    )
    log = glog.Logger(cfg)
    log.access(*make_request(), 0.0)
    log.warning("only me")
    assert udp_listener.recv(4096) == (
        f"<12>gunicorn.app.application.error: [{os.getpid()}] only me\x00".encode()
    )
    assert len(lines(access)) == 1


def test_syslog_over_unix_datagram_socket(tmp_path):
    path = str(tmp_path / "dev-log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        log = glog.Logger(make_cfg(syslog=True, syslog_addr=f"unix://{path}#dgram"))
        log.warning("via unix")
        payload = sock.recv(4096)
    finally:
        sock.close()
    assert payload == f"<12>gunicorn.greenhorn.error: [{os.getpid()}] via unix\x00".encode()


def test_unix_syslog_that_appears_later_is_picked_up(tmp_path):
    # Like openlog(): a syslog daemon that is not up yet is not a startup error.
    path = str(tmp_path / "late-log")
    log = glog.Logger(make_cfg(syslog=True, syslog_addr=f"unix://{path}#dgram"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        log.warning("now it is up")
        payload = sock.recv(4096)
    finally:
        sock.close()
    assert payload.endswith(b"now it is up\x00")


def test_refused_tcp_syslog_is_a_config_error():
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(glog.LogConfigError, match="cannot reach syslog"):
            glog.Logger(make_cfg(syslog=True, syslog_addr=f"tcp://127.0.0.1:{port}"))


def test_unknown_syslog_facility_is_a_config_error():
    with pytest.raises(glog.LogConfigError, match="facility"):
        glog.Logger(make_cfg(syslog=True, syslog_addr="udp://127.0.0.1:9", syslog_facility="x"))


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("udp://localhost:514", (socket.SOCK_DGRAM, ("localhost", 514))),
        ("udp://LogHost", (socket.SOCK_DGRAM, ("loghost", 514))),
        ("udp://", (socket.SOCK_DGRAM, ("localhost", 514))),
        ("tcp://10.0.0.1:6514", (socket.SOCK_STREAM, ("10.0.0.1", 6514))),
        ("udp://[::1]:1514", (socket.SOCK_DGRAM, ("::1", 1514))),
        ("udp://[::1]", (socket.SOCK_DGRAM, ("::1", 514))),
        ("unix:///dev/log", (None, "/dev/log")),
        ("unix:///dev/log#dgram", (socket.SOCK_DGRAM, "/dev/log")),
        ("unix:///var/run/syslog#stream", (socket.SOCK_STREAM, "/var/run/syslog")),
    ],
)
def test_parse_syslog_address(addr, expected):
    assert glog.parse_syslog_address(addr) == expected


@pytest.mark.parametrize(
    "addr",
    ["localhost:514", "http://x", "udp://host:port", "unix://", "unix:///x#raw", "udp://[::1"],
)
def test_parse_syslog_address_rejects(addr):
    with pytest.raises(glog.LogConfigError):
        glog.parse_syslog_address(addr)


# -- files: rotation, close-on-exec, captured stdio --------------------------------------


def test_reopen_files_after_rotation(tmp_path):
    errors, access = tmp_path / "error.log", tmp_path / "access.log"
    log = glog.Logger(make_cfg(errorlog=str(errors), accesslog=str(access)))
    log.info("before")
    log.access(*make_request(), 0.0)
    errors.rename(tmp_path / "error.log.1")
    access.rename(tmp_path / "access.log.1")
    log.info("still old file until reopened")
    log.reopen_files()
    log.info("after")
    log.access(*make_request(), 0.0)
    old_errors = [ERROR_LINE.fullmatch(x).group(3) for x in lines(tmp_path / "error.log.1")]
    assert old_errors == ["before", "still old file until reopened"]
    assert [ERROR_LINE.fullmatch(x).group(3) for x in lines(errors)] == ["after"]
    assert len(lines(tmp_path / "access.log.1")) == 1
    assert len(lines(access)) == 1


def test_reopen_files_covers_user_configured_file_handlers(tmp_path):
    path = tmp_path / "app.log"
    app_logger = logging.getLogger("app")
    handler = logging.FileHandler(path)
    app_logger.addHandler(handler)
    log = glog.Logger(make_cfg())
    path.rename(tmp_path / "app.log.1")
    log.reopen_files()
    app_logger.warning("new")
    assert lines(path) == ["new"]


def test_close_on_exec_marks_log_files(tmp_path):
    log = glog.Logger(make_cfg(errorlog=str(tmp_path / "e.log"), accesslog=str(tmp_path / "a.log")))
    fds = [h.stream.fileno() for h in glog._file_handlers() if h.stream is not None]
    assert len(fds) >= 2
    for fd in fds:
        os.set_inheritable(fd, True)
    log.close_on_exec()
    assert not any(os.get_inheritable(fd) for fd in fds)


CAPTURE_SCRIPT = """
import os, sys
from types import SimpleNamespace
from greenhorn.observe.logger import Logger
cfg = SimpleNamespace(errorlog=sys.argv[1], capture_output=True)
log = Logger(cfg)
log.capture_output()
print("printed"); sys.stdout.flush()
os.write(2, b"raw fd 2\\n")
log.info("logged")
os.rename(sys.argv[1], sys.argv[1] + ".1")
log.reopen_files()
print("printed after rotation"); sys.stdout.flush()
os.write(1, b"raw fd 1 after rotation\\n")
log.info("logged after rotation")
"""


def test_capture_output_redirects_fds_and_follows_rotation(tmp_path):
    path = tmp_path / "error.log"
    result = subprocess.run(
        [sys.executable, "-c", CAPTURE_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    old = lines(tmp_path / "error.log.1")
    assert old[:2] == ["printed", "raw fd 2"]
    assert old[2].endswith("[INFO] logged")
    new = lines(path)
    assert new[:2] == ["printed after rotation", "raw fd 1 after rotation"]
    assert new[2].endswith("[INFO] logged after rotation")


def test_capture_output_is_a_no_op_for_stderr(tmp_path):
    before = os.fstat(1), os.fstat(2)
    glog.Logger(make_cfg(capture_output=True)).capture_output()
    glog.Logger(make_cfg(errorlog=str(tmp_path / "e.log"))).capture_output()
    after = os.fstat(1), os.fstat(2)
    assert [(s.st_dev, s.st_ino) for s in before] == [(s.st_dev, s.st_ino) for s in after]


# -- create() ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec", [None, "", "simple", "gunicorn.glogging.Logger", "greenhorn.observe.logger.Logger"]
)
def test_create_default_logger(spec):
    log = observe.create(make_cfg(logger_class=spec))
    assert type(log) is glog.Logger


@pytest.mark.parametrize("spec", ["gunicorn.glogging.Logger", "gunicorn.instrument.statsd.Statsd"])
def test_create_statsd_logger(spec):
    log = observe.create(make_cfg(logger_class=spec, statsd_host="127.0.0.1:9"))
    assert type(log) is StatsdLogger
    log.statsd.close()


def test_create_custom_logger_class(tmp_path, monkeypatch):
    (tmp_path / "mylogging.py").write_text(
        "from greenhorn.observe.logger import Logger\n"
        "class Custom(Logger):\n"
        "    installed = []\n"
        "    @classmethod\n"
        "    def install(cls):\n"
        "        cls.installed.append(True)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("mylogging.Custom", "mylogging:Custom"):
        log = observe.create(make_cfg(logger_class=spec))
        assert type(log).__name__ == "Custom"
    assert type(log).installed == [True, True]
    assert type(observe.create(make_cfg(logger_class=glog.Logger))) is glog.Logger


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nosuchmodule.Logger", "cannot import"),
        ("os.NoSuchThing", "cannot import"),
        ("os.path", "not a class"),
        ("Bare", "invalid"),
    ],
)
def test_create_bad_logger_class(spec, match):
    with pytest.raises(glog.LogConfigError, match=match):
        observe.create(make_cfg(logger_class=spec))


def test_base_logger_metrics_are_no_ops():
    log = glog.Logger(make_cfg())
    log.increment("x")
    log.gauge("gunicorn.workers", 3)
    log.histogram("h", 1.5)
    log.timer("t", 1.5)
    log.decrement("x")


def test_works_with_the_real_config(tmp_path):
    config = pytest.importorskip("greenhorn.config")
    import dataclasses

    assert observe.create(config.Config()).access_enabled is False
    path = tmp_path / "access.log"
    cfg = dataclasses.replace(config.Config(), accesslog=str(path), access_log_json=True)
    log = observe.create(cfg)
    log.access(*make_request(), 0.001)
    assert json.loads(path.read_text())["status"] == 200
