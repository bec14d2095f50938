"""Logging through the real process: access log atoms and JSON, error log, statsd, syslog."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time

import requests

from conftest import APPS, wait_until


def test_access_log_default_format_and_atoms(greenhorn, tmp_path):
    access = tmp_path / "access.log"
    fmt = '%(h)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s %(b)s "%(a)s" %({x-req}i)s %({content-type}o)s %(p)s %(D)s'
    s = greenhorn("hello:app", "--access-logfile", str(access), "--access-logformat", fmt)
    s.get("/path?x=1", headers={"User-Agent": "tester/1.0", "X-Req": "abc"})
    line = wait_until(lambda: [ln for ln in access.read_text().splitlines() if "/path" in ln], 5)[0]
    parts = line.split(" ")
    assert parts[:8] == ["127.0.0.1", "GET", "/path", "x=1", "HTTP/1.1", "200", "14", "14"]
    assert '"tester/1.0"' in line and " abc " in line and " text/plain " in line
    assert int(parts[-1]) >= 0  # D: microseconds
    assert parts[-2] == f"<{s.wait_workers(1)[0]}>"  # p: gunicorn renders the pid as <pid>


def test_access_log_escapes_forged_lines(greenhorn, tmp_path):
    access = tmp_path / "access.log"
    s = greenhorn("hello:app", "--access-logfile", str(access))
    s.raw(b'GET /x"y HTTP/1.1\r\nHost: a\r\nUser-Agent: evil" 200 "forged\\\r\n\r\n')
    lines = wait_until(lambda: "/x" in access.read_text() and access.read_text(), 5)
    line = next(ln for ln in lines.splitlines() if "/x" in ln)
    assert '"GET /x\\"y HTTP/1.1"' in line
    assert '"evil\\" 200 \\"forged\\\\"' in line


def test_access_log_json_has_queue_time(greenhorn, tmp_path):
    access = tmp_path / "access.json"
    s = greenhorn("hello:app", "--access-logfile", str(access), "--access-log-json")
    s.get("/j?k=v", headers={"X-Request-ID": "rid-1"})
    line = wait_until(lambda: [ln for ln in access.read_text().splitlines() if '"/j"' in ln], 5)
    rec = json.loads(line[0])
    assert rec["method"] == "GET" and rec["path"] == "/j" and rec["query"] == "k=v"
    assert rec["status"] == 200 and rec["bytes"] == 14 and rec["request_id"] == "rid-1"
    assert rec["queue_ms"] >= 0 and rec["duration_ms"] >= 0 and rec["worker_pid"] > 0


def test_error_log_file_and_level(greenhorn, tmp_path):
    errors = tmp_path / "error.log"
    s = greenhorn(
        "errors:app",
        "--error-logfile",
        str(errors),
        "--log-level",
        "debug",
        ready_path=None,
        wait=False,
    )
    _port_from_error_log(s, errors)
    wait_until(lambda: _ok(s), 15)
    s.get("/raise")
    text = wait_until(lambda: "boom from the app" in errors.read_text() and errors.read_text(), 5)
    assert "[ERROR] Error handling request GET /raise" in text
    assert "[DEBUG]" in text


def _port_from_error_log(s, errors) -> None:
    """The error log goes to a file, not to the fixture's stderr: read the port from it."""
    found = wait_until(
        lambda: (
            errors.exists()
            and re.findall(r"Listening at: http://127.0.0.1:(\d+)", errors.read_text())
        ),
        15,
        what="the Listening line in the error log file",
    )
    s.port = int(found[0])


def _ok(s) -> bool:
    try:
        return s.get("/stream").status_code == 200
    except Exception:
        return False


def test_statsd_metrics_reach_a_udp_listener(greenhorn):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        port = udp.getsockname()[1]
        s = greenhorn(
            "hello:app", "-w", "2", "--statsd-host", f"127.0.0.1:{port}", "--statsd-prefix", "svc"
        )
        for _ in range(3):
            s.get("/")
        seen: list[str] = []

        def got(needles: tuple[str, ...]) -> bool:
            try:
                while True:
                    seen.append(udp.recv(4096).decode())
            except TimeoutError:
                pass
            return all(any(n in m for m in seen) for n in needles)

        wait_until(
            lambda: got(
                (
                    "svc.gunicorn.requests:1|c",
                    "svc.gunicorn.request.duration:",
                    "svc.gunicorn.request.status.200:1|c",
                    "svc.gunicorn.workers:",
                )
            ),
            10,
            what=f"statsd datagrams {seen[-10:]}",
        )
        assert any(m.startswith("svc.gunicorn.workers:2|g") for m in seen), seen


def test_syslog_over_udp(greenhorn):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(0.2)
        port = udp.getsockname()[1]
        greenhorn(
            "hello:app",
            "--log-syslog",
            "--log-syslog-to",
            f"udp://127.0.0.1:{port}",
            "--log-syslog-prefix",
            "myapp",
        )
        seen: list[bytes] = []

        def got() -> bool:
            try:
                while True:
                    seen.append(udp.recv(4096))
            except TimeoutError:
                pass
            return any(b"Booting worker" in m for m in seen)

        wait_until(got, 10, what="syslog datagram")
        assert any(m.startswith(b"<") and b"myapp" in m for m in seen)


def test_capture_output_sends_prints_to_the_error_log(greenhorn, tmp_path):
    app = tmp_path / "printer.py"
    app.write_text(
        "import sys\n"
        "def app(environ, start_response):\n"
        "    print('printed by the app', flush=True)\n"
        "    sys.stderr.write('stderr from the app\\n'); sys.stderr.flush()\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
    )
    errors = tmp_path / "err.log"
    s = greenhorn(
        "--pythonpath",
        str(tmp_path),
        "printer:app",
        "--error-logfile",
        str(errors),
        "--capture-output",
        wait=False,
    )
    _port_from_error_log(s, errors)
    wait_until(lambda: _ok(s), 15)
    time.sleep(0.2)
    text = wait_until(lambda: "stderr from the app" in errors.read_text() and errors.read_text(), 5)
    assert "printed by the app" in text


def test_custom_logger_class(greenhorn, tmp_path):
    marker = tmp_path / "custom.log"
    (tmp_path / "mylog.py").write_text(
        "from greenhorn.observe.logger import Logger\n"
        "class MyLogger(Logger):\n"
        "    def __init__(self, cfg):\n"
        "        super().__init__(cfg)\n"
        "        self.access_enabled = True\n"
        "    def access(self, req, resp, environ, request_time):\n"
        f"        with open({str(marker)!r}, 'a') as f:\n"
        "            f.write(f'{req.method} {req.path} {resp.status_code}\\n')\n"
    )
    s = greenhorn(
        "--pythonpath", f"{tmp_path},{APPS}", "--logger-class", "mylog.MyLogger", "hello:app"
    )
    s.get("/custom")
    wait_until(lambda: marker.exists() and "GET /custom 200" in marker.read_text(), 5)


def test_log_config_ini_json_and_dict(greenhorn, tmp_path):
    ini_out = tmp_path / "ini.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys=root,error\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=INFO\nhandlers=\n"
        "[logger_error]\nlevel=INFO\nhandlers=file\npropagate=0\nqualname=gunicorn.error\n"
        f"[handler_file]\nclass=FileHandler\nformatter=plain\nargs=({str(ini_out)!r},)\n"
        "[formatter_plain]\nformat=INI %(levelname)s %(message)s\n"
    )
    s = greenhorn("hello:app", "--log-config", str(ini), wait=False)
    try:
        wait_until(
            lambda: ini_out.exists() and "INI INFO Booting worker" in ini_out.read_text(), 15
        )
    except AssertionError:
        raise AssertionError(s.log + "\n---\n" + ini.read_text()) from None

    json_out = tmp_path / "json.log"
    js = tmp_path / "logging.json"
    js.write_text(
        json.dumps(
            {
                "version": 1,
                "formatters": {"j": {"format": "JSON %(levelname)s %(message)s"}},
                "handlers": {
                    "f": {
                        "class": "logging.FileHandler",
                        "filename": str(json_out),
                        "formatter": "j",
                    }
                },
                "loggers": {
                    "greenhorn.error": {"handlers": ["f"], "level": "INFO", "propagate": False}
                },
            }
        )
    )
    greenhorn("hello:app", "--log-config-json", str(js), wait=False)
    wait_until(lambda: json_out.exists() and "JSON INFO Booting worker" in json_out.read_text(), 15)

    dict_out = tmp_path / "dict.log"
    conf = tmp_path / "dict.conf.py"
    conf.write_text(
        "logconfig_dict = {\n"
        "    'version': 1,\n"
        "    'formatters': {'d': {'format': 'DICT %(levelname)s %(message)s'}},\n"
        f"    'handlers': {{'f': {{'class': 'logging.FileHandler', 'filename': {str(dict_out)!r},"
        " 'formatter': 'd'}},\n"
        "    'loggers': {'gunicorn.error': {'handlers': ['f'], 'level': 'INFO',"
        " 'propagate': False}},\n"
        "}\n"
    )
    greenhorn("hello:app", "-c", str(conf), wait=False)
    wait_until(lambda: dict_out.exists() and "DICT INFO Booting worker" in dict_out.read_text(), 15)


def test_timeout_stacks_and_wsgi_errors_land_in_the_error_log_file(greenhorn, tmp_path):
    errors = tmp_path / "error.log"
    s = greenhorn(
        "--pythonpath",
        f"{tmp_path},{APPS}",
        "errors:app",
        "--error-logfile",
        str(errors),
        wait=False,
    )
    _port_from_error_log(s, errors)
    wait_until(lambda: _ok(s), 15)
    s.get("/wsgi-errors?first")
    wait_until(lambda: "wsgi.errors says first" in errors.read_text(), 5)
    # after logrotate + USR1, wsgi.errors follows the reopened file
    rotated = tmp_path / "error.log.1"
    os.rename(errors, rotated)
    s.send_signal(signal.SIGUSR1)
    # logged before the reopen, so into the old file; the reopen then creates the new one
    wait_until(lambda: "Handling signal: usr1" in rotated.read_text() and errors.exists(), 10)

    probes = iter(range(1000))

    def second_in_new_file() -> bool:
        # the worker reopens once it gets the forwarded USR1; until then probes land in the
        # rotated file, so each probe is unique
        probe = f"second{next(probes)}"
        s.get(f"/wsgi-errors?{probe}")
        return f"wsgi.errors says {probe}\n" in errors.read_text()

    wait_until(second_in_new_file, 10, every=0.3, what="wsgi.errors in the reopened file")
    s.get("/wsgi-errors?third")  # from now on, only the new file
    wait_until(lambda: "wsgi.errors says third" in errors.read_text(), 5, what="third")
    assert "wsgi.errors says third" not in rotated.read_text()


def test_timeout_stack_dump_goes_to_the_error_log_file(greenhorn, tmp_path):
    errors = tmp_path / "error.log"
    s = greenhorn("slow:app", "-t", "2", "--error-logfile", str(errors), wait=False)
    _port_from_error_log(s, errors)
    try:
        requests.get(s.url("/spin?t=60"), timeout=20)
    except requests.RequestException:
        pass
    text = wait_until(
        lambda: (
            "WORKER TIMEOUT" in errors.read_text()
            and 'slow.py", line' in errors.read_text()
            and errors.read_text()
        ),
        15,
        what="timeout report with the stack in the error log file",
    )
    assert "Worker timeout: aborting while serving GET /spin?t=60" in text
