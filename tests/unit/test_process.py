"""Process primitives: exit codes, titles, ids, privilege drop, daemonize, liveness, memory.

They live in the room of the process that uses them: ``ipc/`` (exit codes, titles,
liveness: both processes), ``config/converters.py`` (user and group names),
``workers/privileges.py``, ``master/daemon.py`` and ``master/observer.py`` (RSS).

Anything that changes the process itself (title, uid, daemonize) runs in a subprocess.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from greenhorn.config.converters import resolve_gid, resolve_uid
from greenhorn.ipc import exits, titles
from greenhorn.ipc.signals import is_alive
from greenhorn.master.observer import rss_bytes
from greenhorn.workers.privileges import drop_privileges


def _python(code: str, timeout: float = 20, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def test_exit_codes_are_gunicorns() -> None:
    assert (exits.EXIT_OK, exits.EXIT_FAILURE, exits.EXIT_USAGE) == (0, 1, 2)
    assert (exits.WORKER_BOOT_ERROR, exits.APP_LOAD_ERROR) == (3, 4)


# -- titles ----------------------------------------------------------------------------


def test_title_formats() -> None:
    assert titles.master_title("app") == "greenhorn: master [app]"
    assert titles.worker_title("app") == "greenhorn: worker [app]"


def test_set_title_changes_cmdline() -> None:
    result = _python(
        """
        from greenhorn.ipc import titles
        titles.set_title(titles.master_title("myapp"))
        print(open("/proc/self/cmdline").read().split("\\0")[0])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "greenhorn: master [myapp]"


def test_set_title_survives_environment_edits_before_it() -> None:
    """gunicorn #3430: with LISTEN_FDS first in the environment, unsetting it before
    setproctitle initialises leaves titles unchanged. ``cli.main`` initialises it first."""
    env = {"LISTEN_FDS": "1", "PATH": os.environ.get("PATH", "/usr/bin")}
    result = _python(
        """
        import os
        from greenhorn.ipc import titles
        titles.init_title()
        os.environ.pop("LISTEN_FDS")
        titles.set_title("greenhorn: worker [x]")
        print(open("/proc/self/cmdline").read().split("\\0")[0])
        """,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "greenhorn: worker [x]"


def test_set_title_without_setproctitle_is_a_no_op(monkeypatch) -> None:
    monkeypatch.setattr(titles, "_spt", None)
    titles.set_title("ignored")
    titles.init_title()


# -- ids -------------------------------------------------------------------------------


def test_resolve_uid_and_gid() -> None:
    root = pwd.getpwuid(0).pw_name
    assert resolve_uid(root) == 0
    assert resolve_uid("1234") == 1234
    assert resolve_uid(1234) == 1234
    assert resolve_gid("0") == 0
    assert resolve_gid(77) == 77
    assert resolve_gid(grp.getgrgid(0).gr_name) == 0
    with pytest.raises(ValueError, match="no such user: 'no-such-user-xyz'"):
        resolve_uid("no-such-user-xyz")
    with pytest.raises(ValueError, match="no such group: 'no-such-group-xyz'"):
        resolve_gid("no-such-group-xyz")


def test_drop_privileges_to_current_ids_is_a_no_op() -> None:
    before = (os.getuid(), os.getgid(), sorted(os.getgroups()))
    drop_privileges(None, None)
    if os.geteuid() != 0:
        drop_privileges(os.getuid(), os.getgid())
    assert (os.getuid(), os.getgid(), sorted(os.getgroups())) == before


_DROP = """
    import json, os
    from greenhorn.workers.privileges import drop_privileges
    drop_privileges({uid}, {gid}, initgroups={initgroups})
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    print(json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getegid(),
                      sorted(os.getgroups()), regained]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("initgroups", [False, True])
def test_drop_privileges_from_root(initgroups: bool) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    uid, gid = nobody.pw_uid, nobody.pw_gid
    result = _python(_DROP.format(uid=uid, gid=gid, initgroups=initgroups))
    assert result.returncode == 0, result.stderr
    groups = sorted(os.getgrouplist("nobody", gid)) if initgroups else [gid]
    assert json.loads(result.stdout) == [uid, uid, gid, gid, groups, False]


# -- daemonize -------------------------------------------------------------------------

_DAEMON = """
import json, os, sys
from greenhorn.master.daemon import daemonize

out, inherit = sys.argv[1], sys.argv[2] == "1"
launcher, launcher_sid = os.getpid(), os.getsid(0)
os.umask(0o077)
daemonize(enable_stdio_inheritance=inherit)
print("from the daemon", flush=True)
mask = os.umask(0)
info = {
    "launcher": launcher, "launcher_sid": launcher_sid, "pid": os.getpid(),
    "sid": os.getsid(0), "pgid": os.getpgid(0), "umask": mask, "cwd": os.getcwd(),
    "stdin": os.readlink("/proc/self/fd/0"), "stdout": os.readlink("/proc/self/fd/1"),
    "stderr": os.readlink("/proc/self/fd/2"),
}
with open(out + ".tmp", "w") as f:
    json.dump(info, f)
os.rename(out + ".tmp", out)
"""


def _wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.parametrize("inherit", [False, True])
def test_daemonize(tmp_path: Path, inherit: bool) -> None:
    script, out, log = tmp_path / "daemon.py", tmp_path / "info.json", tmp_path / "stdout.log"
    script.write_text(_DAEMON)
    daemon_pid = None
    try:
        with open(log, "w") as stdout:
            started = time.monotonic()
            launcher = subprocess.run(
                [sys.executable, str(script), str(out), "1" if inherit else "0"],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                cwd=tmp_path,
                timeout=20,
                check=False,
            )
        assert launcher.returncode == 0, launcher.stderr
        assert time.monotonic() - started < 15
        _wait_for(out)
        info = json.loads(out.read_text())
        daemon_pid = info["pid"]
    finally:
        if daemon_pid is not None and is_alive(daemon_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon_pid, signal.SIGKILL)
    assert info["pid"] != info["launcher"]
    assert info["sid"] != info["launcher_sid"]  # a new session, detached from ours
    assert info["sid"] == info["pgid"] != info["pid"]  # not a session leader: no tty again
    assert info["umask"] == 0o022
    assert info["cwd"] == str(tmp_path)  # gunicorn keeps the working directory
    assert info["stdin"] == os.devnull
    if inherit:  # a redirected stdout is kept
        assert info["stdout"] == str(log)
        assert log.read_text() == "from the daemon\n"
    else:
        assert info["stdout"] == info["stderr"] == os.devnull
        assert log.read_text() == ""


# -- liveness and memory ---------------------------------------------------------------


def test_is_alive() -> None:
    assert is_alive(os.getpid())
    assert not is_alive(0)
    assert not is_alive(-1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    assert not is_alive(child.pid)


def test_memory_of_this_process() -> None:
    rss = rss_bytes(os.getpid())
    assert rss is not None and rss > 1024 * 1024


def test_memory_of_missing_pid(tmp_path: Path) -> None:
    assert rss_bytes(999_999_999) is None


def test_memory_parsing_from_a_fake_proc(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "status").write_text("Name:\tpython\nVmPeak:\t 900 kB\nVmRSS:\t  2048 kB\n")
    root = str(tmp_path)
    assert rss_bytes(7, root) == 2048 * 1024
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "status").write_text("Name:\tkthread\n")  # kernel threads: no VmRSS
    assert rss_bytes(8, root) is None
