"""StatsD emission against real datagram listeners: gunicorn's metric names and payloads.

Expected payloads match what gunicorn 27.0.1 sends (captured from a running gunicorn with
``--statsd-prefix svc --dogstatsd-tags env:t,x:y``), e.g.
``svc.gunicorn.requests:1|c|@1.0|#env:t,x:y``.
"""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import pytest

import greenhorn.observe.statsd as gstatsd
from greenhorn import observe
from greenhorn.observe.statsd import (
    StatsdClient,
    StatsdLogger,
    normalize_prefix,
    parse_statsd_address,
)

OUR_LOGGERS = ("greenhorn.error", "greenhorn.access", "gunicorn.error", "gunicorn.access")


def make_cfg(**overrides):
    fields = {
        "accesslog": None,
        "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
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
    fields.update(overrides)
    return SimpleNamespace(**fields)


def make_request(status_code=200):
    req = SimpleNamespace(
        method="GET",
        uri="/",
        path="/",
        query="",
        version=(1, 1),
        headers=[],
        accepted_at=1.0,
        started_at=1.0,
    )
    resp = SimpleNamespace(status=f"{status_code} X", status_code=status_code, headers=[], sent=2)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1"}
    return req, resp, environ


@pytest.fixture(autouse=True)
def restore_logging():
    saved = {}
    for name in OUR_LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), lg.level, lg.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        for handler in lg.handlers:
            if handler not in handlers:
                handler.close()
        lg.handlers = list(handlers)
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def received(sock, count):
    return [sock.recv(4096).decode("ascii") for _ in range(count)]


def nothing_more(sock):
    sock.settimeout(0.05)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected datagram {data!r}")


@pytest.fixture
def statsd_logger(listener, tmp_path):
    host, port = listener.getsockname()
    cfg = make_cfg(
        statsd_host=f"{host}:{port}",
        statsd_prefix="svc",
        dogstatsd_tags="env:t,x:y",
        errorlog=str(tmp_path / "error.log"),
    )
    log = observe.create(cfg)
    yield log
    log.statsd.close()


def test_create_switches_to_statsd_logger(statsd_logger):
    assert type(statsd_logger) is StatsdLogger
    assert statsd_logger.access_enabled  # metrics need access() even with no access log


def test_request_metrics_match_gunicorn(statsd_logger, listener):
    statsd_logger.access(*make_request(), 0.000546)
    statsd_logger.access(*make_request(404), 1.5)
    assert received(listener, 6) == [
        "svc.gunicorn.request.duration:0.546|ms|#env:t,x:y",
        "svc.gunicorn.requests:1|c|@1.0|#env:t,x:y",
        "svc.gunicorn.request.status.200:1|c|@1.0|#env:t,x:y",
        "svc.gunicorn.request.duration:1500.0|ms|#env:t,x:y",
        "svc.gunicorn.requests:1|c|@1.0|#env:t,x:y",
        "svc.gunicorn.request.status.404:1|c|@1.0|#env:t,x:y",
    ]
    assert nothing_more(listener)


def test_log_levels_are_counted(statsd_logger, listener, tmp_path):
    statsd_logger.debug("not counted")
    statsd_logger.info("not counted")
    statsd_logger.warning("w")
    statsd_logger.error("e")
    statsd_logger.critical("c")
    try:
        raise ValueError("x")
    except ValueError:
        statsd_logger.exception("x")
    assert received(listener, 4) == [
        "svc.gunicorn.log.warning:1|c|@1.0|#env:t,x:y",
        "svc.gunicorn.log.error:1|c|@1.0|#env:t,x:y",
        "svc.gunicorn.log.critical:1|c|@1.0|#env:t,x:y",
        "svc.gunicorn.log.exception:1|c|@1.0|#env:t,x:y",
    ]
    assert nothing_more(listener)
    text = (tmp_path / "error.log").read_text()
    for word in ("[WARNING] w", "[ERROR] e", "[CRITICAL] c", "[ERROR] x", "ValueError: x"):
        assert word in text


def test_metric_primitives(statsd_logger, listener):
    statsd_logger.gauge("gunicorn.workers", 4)
    statsd_logger.increment("custom", 3)
    statsd_logger.decrement("custom", 2)
    statsd_logger.histogram("gunicorn.backlog", 7)
    statsd_logger.timer("t", 2.5)
    assert received(listener, 5) == [
        "svc.gunicorn.workers:4|g|#env:t,x:y",
        "svc.custom:3|c|@1.0|#env:t,x:y",
        "svc.custom:-2|c|@1.0|#env:t,x:y",
        "svc.gunicorn.backlog:7|h|#env:t,x:y",
        "svc.t:2.5|ms|#env:t,x:y",
    ]


def test_gunicorn_extra_metric_protocol(statsd_logger, listener, tmp_path):
    extra = {"metric": "gunicorn.workers", "value": 2, "mtype": "gauge"}
    statsd_logger.debug("", extra=extra)
    statsd_logger.info("%d workers", 2, extra={**extra, "value": 3})
    statsd_logger.log(logging.INFO, "", extra={"metric": "c", "value": 1, "mtype": "counter"})
    statsd_logger.info("", extra={"metric": "h", "value": 9, "mtype": "histogram"})
    statsd_logger.info("", extra={"metric": "t", "value": 9, "mtype": "timer"})
    assert received(listener, 5) == [
        "svc.gunicorn.workers:2|g|#env:t,x:y",
        "svc.gunicorn.workers:3|g|#env:t,x:y",
        "svc.c:1|c|@1.0|#env:t,x:y",
        "svc.h:9|h|#env:t,x:y",
        "svc.t:9|ms|#env:t,x:y",
    ]
    assert (tmp_path / "error.log").read_text().count("\n") == 1  # only the non-empty message


def test_access_line_is_still_written_with_statsd(listener, tmp_path):
    host, port = listener.getsockname()
    access = tmp_path / "access.log"
    log = observe.create(
        make_cfg(statsd_host=f"{host}:{port}", accesslog=str(access), access_log_format="%(s)s")
    )
    log.access(*make_request(201), 0.001)
    log.statsd.close()
    assert access.read_text() == "201\n"
    assert received(listener, 3)[2] == "gunicorn.request.status.201:1|c|@1.0"


def test_no_prefix_no_tags(listener):
    host, port = listener.getsockname()
    client = StatsdClient(f"{host}:{port}")
    client.send("a:1|c|@1.0")
    client.close()
    assert received(listener, 1) == ["a:1|c|@1.0"]


def test_unix_datagram_collector(tmp_path):
    path = str(tmp_path / "statsd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        client = StatsdClient(f"unix:{path}", prefix="p.")
        client.send("x:1|g")
        client.close()
        assert sock.recv(100) == b"p.x:1|g"
    finally:
        sock.close()


def test_sending_to_nobody_never_raises(listener):
    host, port = listener.getsockname()
    listener.close()  # the port now answers with ICMP port unreachable
    client = StatsdClient(f"{host}:{port}")
    for _ in range(20):
        client.send("x:1|c|@1.0")
    client.close()
    client.send("after close:1|c")  # no socket and not yet time to retry: dropped


def test_unreachable_collector_is_reported_once_and_never_raises(tmp_path):
    errors = tmp_path / "error.log"
    host = f"unix:{tmp_path}/no-collector.sock"
    log = observe.create(make_cfg(statsd_host=host, errorlog=str(errors)))
    assert log.statsd.sock is None
    log.increment("x")
    log.access(*make_request(), 0.1)
    log.warning("a warning is counted too, and dropped")
    text = errors.read_text()
    assert text.count(f"[WARNING] statsd: cannot use {host}") == 1


def test_unix_collector_that_appears_later(tmp_path, monkeypatch):
    monkeypatch.setattr(gstatsd, "RECONNECT_INTERVAL", 0.0)
    path = str(tmp_path / "late.sock")
    client = StatsdClient(f"unix://{path}")
    assert client.sock is None
    client.send("lost:1|c")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        client.send("found:1|c")
        assert sock.recv(100) == b"found:1|c"
    finally:
        client.close()
        sock.close()


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ""),
        (None, ""),
        ("a", "a."),
        ("app", "app."),
        ("app.", "app."),
        ("svc.app..", "svc.app."),
    ],
)
def test_normalize_prefix(prefix, expected):
    assert normalize_prefix(prefix) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:8125", (socket.AF_INET, ("localhost", 8125))),
        ("StatsD", (socket.AF_INET, ("statsd", 8125))),
        ("10.0.0.1:9125", (socket.AF_INET, ("10.0.0.1", 9125))),
        ("[::1]:9125", (socket.AF_INET6, ("::1", 9125))),
        ("[::1]", (socket.AF_INET6, ("::1", 8125))),
        ("unix:/run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
        ("unix:///run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
        ("/run/statsd.sock", (socket.AF_UNIX, "/run/statsd.sock")),
        (("127.0.0.1", 8125), (socket.AF_INET, ("127.0.0.1", 8125))),
        (("::1", "8125"), (socket.AF_INET6, ("::1", 8125))),
    ],
)
def test_parse_statsd_address(value, expected):
    assert parse_statsd_address(value) == expected


@pytest.mark.parametrize("value", ["host:port", "unix:", "[::1", "[::1]x"])
def test_parse_statsd_address_rejects(value):
    with pytest.raises(ValueError):
        parse_statsd_address(value)
