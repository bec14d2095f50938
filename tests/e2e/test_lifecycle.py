"""Worker lifecycle through the real master: deaths, timeouts, recycling, boot failures."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import requests

from conftest import alive, base_env, children, command, wait_until


def test_killed_worker_is_replaced_and_no_other_request_fails(greenhorn):
    s = greenhorn("slow:app", "-w", "2", ready_path="/?t=0")
    workers = s.wait_workers(2)
    failures: list[str] = []
    done = threading.Event()
    served = [0]

    def load() -> None:
        while not done.is_set():
            try:
                r = requests.get(s.url("/?t=0.01"), timeout=10)
                served[0] += 1
                if r.status_code != 200:
                    failures.append(str(r.status_code))
            except requests.RequestException as exc:
                failures.append(repr(exc))

    # a long request pinned to one worker; we kill the *other*, idle-ish one
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    s.wait_for_log(rf"Worker \(pid:{victim}\) was sent SIGKILL! Perhaps out of memory\?")
    s.wait_workers(2, exclude={victim})
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(15)
    # requests in flight on the killed worker may fail; none other may
    assert len(failures) <= 1, failures
    assert served[0] > 10


def test_hung_request_is_killed_at_timeout_with_its_traceback(greenhorn):
    s = greenhorn("slow:app", "-w", "1", "-t", "2", ready_path="/?t=0")
    victim = s.wait_workers(1)[0]
    t0 = time.monotonic()
    r = None
    try:
        r = requests.get(s.url("/spin?t=60"), timeout=20)
    except requests.RequestException:
        pass
    elapsed = time.monotonic() - t0
    assert elapsed < 12, "the hung request must be cut at the timeout"
    assert r is None or r.status_code >= 500
    s.wait_for_log(rf"WORKER TIMEOUT \(pid:{victim}\) while serving GET /spin\?t=60")
    log = s.wait_for_log(r'File ".*slow\.py", line \d+ in app')
    assert log
    assert "Worker timeout: aborting while serving GET /spin?t=60" in s.log
    s.wait_workers(1, exclude={victim})
    assert s.get("/?t=0").status_code == 200


def test_max_requests_recycles_the_worker(greenhorn):
    s = greenhorn("hello:app", "-w", "1", "--max-requests", "5", ready_path=None)
    first = s.wait_workers(1)[0]
    for _ in range(5):
        assert s.get("/").status_code == 200
    s.wait_for_log("Autorestarting worker after current request")
    second = s.wait_workers(1, exclude={first})[0]
    assert second != first
    assert s.get("/").status_code == 200


def run_to_exit(args: list[str], tmp_path, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(tmp_path),
        env=base_env(),
        start_new_session=True,
    )


def test_worker_boot_error_exits_3_without_leftovers(tmp_path):
    conf = tmp_path / "boom.conf.py"
    conf.write_text("def post_fork(server, worker):\n    raise RuntimeError('no boot')\n")
    pidfile = tmp_path / "x.pid"
    proc = run_to_exit(
        ["-c", str(conf), "-b", "127.0.0.1:0", "-w", "2", "--pid", str(pidfile), "hello:app"],
        tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Worker failed to boot" in proc.stderr
    assert not pidfile.exists()


def test_missing_app_module_exits_3_with_one_clear_line(tmp_path):
    pidfile = tmp_path / "x.pid"
    proc = run_to_exit(
        ["-b", "127.0.0.1:0", "-w", "2", "--pid", str(pidfile), "no_such_module:app"], tmp_path
    )
    assert proc.returncode == 3, proc.stderr  # gunicorn's status (test_exit_status.py)
    assert "no_such_module" in proc.stderr and "not found" in proc.stderr
    assert "Booting worker" not in proc.stderr, "a missing module is caught before forking"
    assert "Traceback" not in proc.stderr
    assert not pidfile.exists()


def test_preload_import_error_exits_1_like_gunicorn(tmp_path):
    proc = run_to_exit(["-b", "127.0.0.1:0", "--preload", "hello:nope"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bind_error_is_one_line_and_nonzero(greenhorn, tmp_path):
    s = greenhorn("hello:app")
    proc = subprocess.run(
        command("-b", f"127.0.0.1:{s.port}", "hello:app"),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(tmp_path),
        env=base_env(GREENHORN_CMD_ARGS=""),
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "Can't connect to" in proc.stderr


def test_pidfile_lifecycle_and_hooks(greenhorn, tmp_path):
    log = tmp_path / "hooks.log"
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(
        "import os\n"
        f"LOG = {str(log)!r}\n"
        "def _w(line):\n"
        "    with open(LOG, 'a') as f:\n"
        "        f.write(line + '\\n')\n"
        "def on_starting(server): _w('on_starting')\n"
        "def when_ready(server): _w('when_ready')\n"
        "def pre_fork(server, worker): _w('pre_fork')\n"
        "def post_fork(server, worker): _w('post_fork %d' % worker.pid)\n"
        "def post_worker_init(worker): _w('post_worker_init %d' % os.getpid())\n"
        "def pre_request(worker, req): _w('pre_request ' + req.path)\n"
        "def post_request(worker, req, environ, resp): _w('post_request %s %s' % (req.path, resp.status))\n"
        "def child_exit(server, worker): _w('child_exit %d' % worker.pid)\n"
        "def worker_exit(server, worker): _w('worker_exit %d' % worker.pid)\n"
        "def nworkers_changed(server, new, old): _w('nworkers_changed %s %s' % (new, old))\n"
        "def on_exit(server): _w('on_exit')\n"
    )
    pidfile = tmp_path / "g.pid"
    s = greenhorn("hello:app", "-c", str(conf), "--pid", str(pidfile))
    assert pidfile.read_text().strip() == str(s.pid)
    s.get("/hooked")
    s.send_signal(signal.SIGTTIN)
    s.wait_workers(2)
    assert s.stop() == 0
    assert not pidfile.exists()
    text = log.read_text()
    for needle in (
        "on_starting",
        "when_ready",
        "pre_fork",
        "post_fork",
        "post_worker_init",
        "pre_request /hooked",
        "post_request /hooked 200 OK",
        "nworkers_changed 2 1",
        "worker_exit",
        "child_exit",
        "on_exit",
    ):
        assert needle in text, (needle, text)
    assert text.index("on_starting") < text.index("pre_fork") < text.index("on_exit")


def test_runs_as_pid_1_and_reaps_orphans(tmp_path):
    probe = subprocess.run(["unshare", "-pf", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        import pytest

        pytest.skip("unshare cannot create a PID namespace here")
    app = tmp_path / "orphans.py"
    app.write_text(
        "import os, subprocess\n"
        "def app(environ, start_response):\n"
        "    # leave an orphan behind: a grandchild whose parent exits at once\n"
        "    subprocess.run(['sh', '-c', 'sleep 0.2 &'], check=True)\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(os.getpid()).encode()]\n"
    )
    err = tmp_path / "err.log"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            [
                "unshare",
                "-pf",
                "--mount-proc",
                *command(
                    "--pythonpath", str(tmp_path), "-b", "127.0.0.1:0", "-w", "2", "orphans:app"
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=e,
            env=base_env(),
            cwd=str(tmp_path),
            start_new_session=True,
        )
    try:
        import re

        port = int(
            wait_until(
                lambda: re.findall(r"Listening at: http://127.0.0.1:(\d+)", err.read_text()), 20
            )[0]
        )
        assert "(1)" in err.read_text().split("Listening at:")[1].splitlines()[0]
        for _ in range(5):
            r = wait_until(lambda: _get(port), 15)
            assert r.status_code == 200
        time.sleep(1.0)
        # TERM to the unshare process is forwarded? No: signal PID 1 of the namespace
        # through its host pid (the only child of unshare).
        inner = wait_until(lambda: children(proc.pid), 10)[0]
        zombies = _zombies_under(inner)
        assert not zombies, f"zombies not reaped by PID 1: {zombies}"
        os.kill(inner, signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _get(port: int):
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    except requests.RequestException:
        return None


def _zombies_under(pid: int) -> list[int]:
    out = []
    stack = [pid]
    while stack:
        p = stack.pop()
        for c in children(p):
            stack.append(c)
            if not alive(c):
                out.append(c)
    return out
