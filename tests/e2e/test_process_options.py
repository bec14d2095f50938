"""Process-level options through the real executable: daemon, user/group, proc_name,
preload, chdir, fd://, worker_abort."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import alive, base_env, children, command, proc_status, read_all, wait_until


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode().strip()


def _uid(pid: int) -> int:
    return proc_status(pid, "Uid")


def test_proc_name_titles(greenhorn):
    s = greenhorn("hello:app", "-n", "shop")
    assert _cmdline(s.pid) == "greenhorn: master [shop]"
    worker = s.wait_workers(1)[0]
    assert _cmdline(worker) == "greenhorn: worker [shop]"


def test_preload_imports_the_app_once_in_the_master(greenhorn, tmp_path):
    app = tmp_path / "preloaded.py"
    app.write_text(
        "import os\n"
        "LOADED_IN = os.getpid()\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [str(LOADED_IN).encode()]\n"
    )
    s = greenhorn("--pythonpath", str(tmp_path), "--preload", "-w", "2", "preloaded:app")
    assert s.get("/").text == str(s.pid)
    s2 = greenhorn("--pythonpath", str(tmp_path), "-w", "1", "preloaded:app")
    assert s2.get("/").text == str(s2.wait_workers(1)[0])


def test_chdir_makes_the_app_importable(greenhorn, tmp_path):
    appdir = tmp_path / "site"
    appdir.mkdir()
    (appdir / "here.py").write_text(
        "import os\ndef app(e, sr):\n    sr('200 OK', [])\n    return [os.getcwd().encode()]\n"
    )
    s = greenhorn("--chdir", str(appdir), "here:app")
    assert s.get("/").text == str(appdir)


def test_fd_bind_serves_an_inherited_socket(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    err = tmp_path / "err.log"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            command("-b", f"fd://{fd}", "hello:app"),
            stderr=e,
            stdout=subprocess.DEVNULL,
            env=base_env(),
            cwd=str(tmp_path),
            pass_fds=(fd,),
            start_new_session=True,
        )
    sock.close()
    try:
        r = wait_until(lambda: _get(f"http://127.0.0.1:{port}/"), 20, every=0.1)
        assert r.text == "Hello, world!\n"
        assert f"Listening at: http://127.0.0.1:{port}" in err.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def _get(url: str):
    try:
        return requests.get(url, timeout=5)
    except requests.RequestException:
        return None


def test_daemon_mode_pidfile_and_winch(tmp_path):
    pidfile = tmp_path / "d.pid"
    errlog = tmp_path / "d.log"
    proc = subprocess.run(
        command(
            "-D",
            "-b",
            "127.0.0.1:0",
            "-w",
            "2",
            "--pid",
            str(pidfile),
            "--error-logfile",
            str(errlog),
            "hello:app",
        ),
        env=base_env(),
        cwd=str(tmp_path),
        timeout=30,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr
    master = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 15))
    try:
        import re

        port = int(
            wait_until(
                lambda: re.findall(r"Listening at: http://127.0.0.1:(\d+)", errlog.read_text()), 15
            )[0]
        )
        assert wait_until(lambda: _get(f"http://127.0.0.1:{port}/"), 15).status_code == 200
        assert os.getsid(master) == os.getpgid(master) != os.getsid(0), "detached session"
        wait_until(lambda: len([p for p in children(master) if alive(p)]) == 2, 15)
        os.kill(master, signal.SIGWINCH)  # daemonized: WINCH stops the workers
        wait_until(lambda: not [p for p in children(master) if alive(p)], 20, what="workers gone")
        assert alive(master)
    finally:
        os.kill(master, signal.SIGTERM)
        wait_until(lambda: not alive(master), 20, what="daemon exit")
    assert not pidfile.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch user")
def test_user_and_group_switch_in_workers(greenhorn):
    nobody = pwd.getpwnam("nobody")
    s = greenhorn("hello:app", "-u", "nobody", "-g", str(nobody.pw_gid))
    worker = s.wait_workers(1)[0]
    assert _uid(worker) == nobody.pw_uid
    assert _uid(s.pid) == 0, "the master keeps its privileges"
    assert s.get("/").status_code == 200
    # the worker stops at once on TERM, although it can no longer import what root could
    # (here the interpreter's library may be unreadable to nobody): it was 30 s, a SIGKILL
    # at graceful_timeout after its control thread died on a lazy import
    assert s.stop(timeout=10) == 0
    assert "Traceback" not in s.log and "SIGKILL" not in s.log


def test_worker_abort_hook_runs_on_timeout(greenhorn, tmp_path):
    marker = tmp_path / "aborted"
    conf = tmp_path / "abort.conf.py"
    conf.write_text(
        "import os\n"
        "def worker_abort(worker):\n"
        f"    open({str(marker)!r}, 'w').write(str(os.getpid()))\n"
    )
    s = greenhorn("slow:app", "-c", str(conf), "-t", "2", ready_path="/?t=0")
    victim = s.wait_workers(1)[0]
    t0 = time.monotonic()
    try:
        requests.get(s.url("/?t=30"), timeout=20)
    except requests.RequestException:
        pass
    assert time.monotonic() - t0 < 15
    wait_until(lambda: marker.exists() and marker.read_text() == str(victim), 10)


def test_missing_extra_names_the_package_to_install(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('gevent', 'eventlet'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = base_env(PYTHONPATH=str(tmp_path))
    for kind in ("gevent", "eventlet"):
        proc = subprocess.run(
            command("-b", "127.0.0.1:0", "-k", kind, "hello:app"),
            env=env,
            cwd=str(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"needs {kind}: pip install {kind}" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_stale_unix_socket_is_replaced_and_umask_sets_its_mode(greenhorn, tmp_path):
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket file nobody listens on: a crashed server's leftover
    stale.close()
    assert path.exists()
    s = greenhorn("hello:app", "-b", f"unix:{path}", "-m", "007", wait=False)
    s.wait_for_log(rf"Listening at: unix:{path}")
    assert (os.stat(path).st_mode & 0o777) == 0o770
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(str(path))
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_all(c).endswith(b"Hello, world!\n")


def test_reuse_port_lets_two_masters_share_a_port(greenhorn):
    first = greenhorn("echo:app", "--reuse-port")
    second = greenhorn("echo:app", "--reuse-port", "-b", f"127.0.0.1:{first.port}")
    assert second.port == first.port
    masters = set()
    for _ in range(60):
        with socket.create_connection(("127.0.0.1", first.port), timeout=10) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            body = read_all(c).partition(b"\r\n\r\n")[2]
        masters.add(__import__("json").loads(body.partition(b"\n")[0])["pid"])
    owners = {p: "first" for p in first.worker_pids()} | {p: "second" for p in second.worker_pids()}
    assert {owners[p] for p in masters} == {"first", "second"}, "the kernel spreads connections"


def test_max_requests_jitter_varies_the_limit(greenhorn):
    s = greenhorn("echo:app", "--max-requests", "3", "--max-requests-jitter", "3", ready_path=None)
    first = s.wait_workers(1)[0]
    served = 0
    while first in s.worker_pids() and served < 10:
        assert s.get("/").status_code == 200
        served += 1
        time.sleep(0.05)
    s.wait_for_log("Autorestarting worker after current request")
    assert 3 <= served <= 6 + 1  # the limit is 3 + jitter in [0, 3]


def test_web_concurrency_auto_sizes_the_workers(greenhorn):
    s = greenhorn("hello:app", "--worker-memory", "64", env={"WEB_CONCURRENCY": "auto"})
    count = int(s.wait_for_log(r"Auto-sizing workers: .*-> (\d+) workers?")[0])
    assert len(s.wait_workers(count)) == count
