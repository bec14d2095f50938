"""`greenhorn ctl`: talk to a running master over its UNIX control socket.

Why: signals can add or remove a worker, but they cannot answer "what is each worker doing
right now?". The master already knows (the per-worker scoreboards of ``heartbeat.py``), so it
answers on a control socket; this module is both ends of that conversation.

Server side (in the master): ``ControlServer(path, mode)`` is a non-blocking state machine
driven by the master's ``select`` loop, like ``metrics.MetricsServer`` (same ``StreamEndpoint``):
``fds()``, ``handle(fd, dispatch)``, ``expire(now)``, ``close()`` (also removes the socket
file, if it is still ours), ``close_in_child()`` (after fork: close fds, touch no file).

Protocol: one connection, one request, one reply, each a single line of strict JSON::

    → {"command": "add", "args": ["2"]}
    ← {"ok": true, "data": {...}}            or   {"ok": false, "error": "one line"}

``dispatch(command, args) -> dict`` is ``Arbiter.control``; a ValueError it raises is the
user's mistake and its message is sent back; anything else is reported as an internal error
(the master keeps running).

Client side: ``main(argv)`` implements ``greenhorn ctl``. Which master: ``--control-socket
PATH``; else ``--pid PIDFILE`` (or a bare pid) → ``default_socket_path(pid)`` (also looking in
the other default places, in case the master ran with a different XDG_RUNTIME_DIR or user);
else the one live master whose socket is in the default directory. No environment variable
is consulted beyond those that ``default_socket_path`` reads. Exit 0 on success, 1 when no
master answers or the master refuses the command (one line on stderr), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import socket
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenhorn.heartbeat import system_tmp_dir
from greenhorn.metrics import StreamEndpoint
from greenhorn.pidfile import read_pid
from greenhorn.process import is_alive
from greenhorn.sockets import BindError

__all__ = [
    "ControlServer",
    "CtlError",
    "NoMaster",
    "default_socket_path",
    "main",
    "request",
]

PROG = "greenhorn ctl"
MAX_LINE = 8192  # bytes of one request line
MAX_REPLY = 64 * 1024 * 1024
CLIENT_TIMEOUT = 5.0
_SOCKET_NAME = re.compile(r"greenhorn-(\d+)\.ctl")
Dispatch = Callable[[str, list[str]], Mapping[str, Any]]


# -- where the socket lives -------------------------------------------------------------------


def _runtime_dir() -> str | None:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    usable = os.path.isabs(runtime) and os.path.isdir(runtime)
    return runtime if usable and os.access(runtime, os.W_OK | os.X_OK) else None


def _tmp_dir(uid: int) -> str:
    return os.path.join(system_tmp_dir(), f"greenhorn-{uid}")


def _private_dir(path: str) -> None:
    """Create ``path`` mode 0700, or check that the existing one is ours and private."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory owned by uid {os.geteuid()}")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def default_socket_path(pid: int, *, create: bool = True) -> str:
    """Where the master with ``pid`` puts its control socket when none is configured:
    ``$XDG_RUNTIME_DIR/greenhorn-<pid>.ctl`` when that directory is set and writable, else
    ``<tempdir>/greenhorn-<uid>/greenhorn-<pid>.ctl`` (the directory is created 0700 unless
    ``create`` is False; PermissionError if it exists and is not ours)."""
    runtime = _runtime_dir()
    if runtime is not None:
        return os.path.join(runtime, f"greenhorn-{pid}.ctl")
    directory = _tmp_dir(os.geteuid())
    if create:
        _private_dir(directory)
    return os.path.join(directory, f"greenhorn-{pid}.ctl")


def _owner_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def candidate_paths(pid: int) -> list[str]:
    """Every default place the socket of master ``pid`` may be, most likely first."""
    name = f"greenhorn-{pid}.ctl"
    paths = [default_socket_path(pid, create=False)]
    uids = [u for u in (_owner_of(pid), os.geteuid()) if u is not None]
    for uid in uids:
        paths.append(os.path.join(_tmp_dir(uid), name))
        paths.append(os.path.join(f"/run/user/{uid}", name))
    return list(dict.fromkeys(paths))


# -- server side --------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Make ``value`` strict JSON: non-finite floats become "+Inf"/"-Inf"/"NaN"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode() + b"\n"


def _error_line(message: str) -> bytes:
    return _line({"ok": False, "error": " ".join(message.split())})


def answer(data: bytes, eof: bool, dispatch: Dispatch) -> bytes | None:
    """The reply to one request line (None: the line is not complete yet)."""
    line, newline, _ = data.partition(b"\n")
    if not newline and not (eof and line.strip()):
        return None
    try:
        req = json.loads(line)
    except ValueError:
        return _error_line("malformed request: expected one JSON object per line")
    if not isinstance(req, dict) or not isinstance(req.get("command"), str):
        return _error_line('malformed request: expected {"command": "...", "args": [...]}')
    args = req.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str | int) for a in args):
        return _error_line("malformed request: args must be a list of strings")
    try:
        result = dispatch(req["command"], [str(a) for a in args])
    except ValueError as exc:
        return _error_line(str(exc) or "invalid command")
    except Exception as exc:  # the master must survive a bug in a command
        return _error_line(f"internal error: {type(exc).__name__}: {exc}")
    try:
        return _line({"ok": True, "data": _jsonable(result)})
    except (TypeError, ValueError) as exc:
        return _error_line(f"internal error: cannot encode the reply: {exc}")


def _listening(path: str) -> bool:
    """True if something accepts connections on the UNIX socket ``path`` (not a stale file)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as exc:
        return isinstance(exc, PermissionError | TimeoutError)
    finally:
        probe.close()
    return True


def _clear_stale(path: str, takeover: bool) -> None:
    """Remove a socket file nobody listens on; refuse to touch anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(f"Control socket {path} exists and is not a socket; not removing it")
    if not takeover and _listening(path):
        raise BindError(f"Control socket {path} is in use by another running master")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ControlServer:
    """The master's control socket at ``path`` (file mode ``mode``).

    Raises ``greenhorn.sockets.BindError`` (one line) when the path holds something that is
    not a socket, when another live master answers on it (unless ``takeover``: then the new
    master takes the name, e.g. after USR2), or when it cannot be bound.
    """

    def __init__(self, path: str, mode: int = 0o600, *, takeover: bool = False) -> None:
        self.path = os.path.abspath(path)
        _clear_stale(self.path, takeover)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            old_umask = os.umask(0o777 & ~mode)  # no window in which the file is more open
            try:
                sock.bind(self.path)
                bound = True
            finally:
                os.umask(old_umask)
            os.chmod(self.path, mode)
            st = os.lstat(self.path)
            sock.listen(16)
            sock.setblocking(False)
            sock.set_inheritable(False)
        except OSError as exc:
            sock.close()
            if bound:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            raise BindError(
                f"Cannot open control socket {self.path}: {exc.strerror or exc}", exc.errno
            )
        self._identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        self.name = f"unix:{self.path}"
        self.endpoint = StreamEndpoint(
            sock, max_request=MAX_LINE, overflow_reply=_error_line("request too large")
        )

    def fds(self) -> list[int]:
        """Select these for reading: the listener and clients still sending."""
        return self.endpoint.fds()

    def wfds(self) -> list[int]:
        """Optional: select these for writing (replies larger than the socket buffer)."""
        return self.endpoint.wfds()

    def handle(self, fd: int, dispatch: Dispatch) -> None:
        """Accept, read or write on ``fd``; ``dispatch`` is ``Arbiter.control``."""
        self.endpoint.handle(fd, lambda data, eof: answer(data, eof, dispatch))

    def expire(self, now: float) -> None:
        """Drop clients older than two seconds (``now`` from ``time.monotonic()``)."""
        self.endpoint.expire(now)

    def close(self) -> None:
        """Close everything and remove the socket file if it is still the one we bound."""
        self.endpoint.close()
        identity, self._identity = self._identity, None
        if identity is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == identity:
                os.unlink(self.path)

    def close_in_child(self) -> None:
        """In a freshly forked worker: close our fds, leave the socket file alone."""
        self._identity = None
        self.endpoint.close()


# -- client side --------------------------------------------------------------------------------


class CtlError(Exception):
    """The command failed; ``str()`` is one line for the terminal."""


class NoMaster(CtlError):
    """No master answers: no pid file, a dead pid, no socket, or the socket refuses."""


def request(
    path: str, command: str, args: Sequence[str] = (), timeout: float = CLIENT_TIMEOUT
) -> Any:
    """Send one command to the control socket at ``path``; return the reply's ``data``.

    Raises NoMaster when nobody listens there, CtlError for any other failure (including
    the master's own ``{"ok": false, "error": ...}``)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            why = "no such socket" if isinstance(exc, FileNotFoundError) else "refused"
            raise NoMaster(f"no master running: control socket {path}: {why}")
        except PermissionError:
            raise CtlError(f"permission denied on control socket {path}")
        except OSError as exc:
            raise CtlError(f"cannot connect to control socket {path}: {exc.strerror or exc}")
        reply = _exchange(sock, path, {"command": command, "args": list(args)}, timeout)
    finally:
        sock.close()
    if not isinstance(reply, dict) or "ok" not in reply:
        raise CtlError(f"unexpected reply from the master on {path}")
    if not reply["ok"]:
        raise CtlError(" ".join(str(reply.get("error") or "the master refused").split()))
    return reply.get("data")


def _exchange(sock: socket.socket, path: str, message: Mapping[str, Any], timeout: float) -> Any:
    chunks: list[bytes] = []
    size = 0
    try:
        sock.sendall(_line(message))
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if b"\n" in data or size > MAX_REPLY:
                break
    except TimeoutError:
        raise CtlError(f"the master did not answer on {path} within {timeout:g}s")
    except ConnectionResetError:
        raise CtlError(f"the master closed {path} without answering (is it stopping?)")
    except OSError as exc:
        raise CtlError(f"lost the connection to {path}: {exc.strerror or exc}")
    line = b"".join(chunks).partition(b"\n")[0]
    if not line:
        raise CtlError(f"the master closed {path} without answering")
    try:
        return json.loads(line)
    except ValueError:
        raise CtlError(f"unreadable reply from the master on {path}")


def _pid_from(value: str) -> int:
    """``--pid`` value (a pid file, or a bare pid) → a live pid, or NoMaster."""
    if not os.path.exists(value) and value.isdigit():
        pid: int | None = int(value)
    else:
        pid = read_pid(value)
        if pid is None:
            why = "not found" if not os.path.exists(value) else "holds no pid"
            raise NoMaster(f"no master running: pid file {value} {why}")
    assert pid is not None
    if not is_alive(pid):
        raise NoMaster(f"no master running: pid {pid} (from {value}) is not running")
    return pid


def _socket_for_pid(pid: int) -> str:
    candidates = candidate_paths(pid)
    for path in candidates:
        if os.path.exists(path):
            return path
    raise NoMaster(
        f"master {pid} has no control socket at {candidates[0]} "
        "(started with --no-control-socket, or with --control-socket PATH?)"
    )


def discover() -> str:
    """The socket of the one live master in the default directories (NoMaster/CtlError)."""
    dirs = [d for d in (_runtime_dir(), _tmp_dir(os.geteuid())) if d]
    found: dict[int, str] = {}
    for directory in dirs:
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(directory)):
                m = _SOCKET_NAME.fullmatch(entry)
                pid = int(m.group(1)) if m else 0
                path = os.path.join(directory, entry)
                if pid and pid not in found and is_alive(pid) and _listening(path):
                    found[pid] = path
    if not found:
        raise NoMaster(
            f"no master running (no control socket in {' or '.join(dirs)}); "
            "use --pid PIDFILE or --control-socket PATH"
        )
    if len(found) > 1:
        pids = ", ".join(str(p) for p in sorted(found))
        raise CtlError(
            f"several masters running (pids {pids}); choose one with --pid or --control-socket"
        )
    return next(iter(found.values()))


def locate(control_socket: str | None, pidfile: str | None) -> str:
    """The control socket path to use, by the rules in the module docstring."""
    if control_socket:
        if not os.path.exists(control_socket):
            raise NoMaster(f"no master running: control socket {control_socket} does not exist")
        return control_socket
    if pidfile:
        return _socket_for_pid(_pid_from(pidfile))
    return discover()


# -- output -------------------------------------------------------------------------------------


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _current(worker: Mapping[str, Any]) -> str:
    current = [c for c in worker.get("current") or () if isinstance(c, Mapping)]
    if not current:
        return "-"
    longest = max(current, key=lambda c: float(c.get("seconds", 0.0)))
    text = f"{_printable(str(longest.get('request', '?')))} ({float(longest['seconds']):.1f}s)"
    return text + (f" +{len(current) - 1} more" if len(current) > 1 else "")


def _table(rows: list[tuple[str, ...]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_workers(status: Mapping[str, Any]) -> str:
    """``status`` → a summary line about the master and one table row per worker."""
    master = status.get("master", {})
    workers = sorted(status.get("workers", ()), key=lambda w: w.get("age", 0))
    readiness = "ready" if master.get("ready") else "not ready"
    summary = (
        f"master {master.get('pid', '?')}: {master.get('state', '?')}, {readiness}; "
        f"greenhorn {master.get('version', '?')}, {master.get('worker_class', '?')} workers; "
        f"{len(workers)} running, target {master.get('workers_target', '?')}; "
        f"up {float(master.get('uptime', 0.0)):.0f}s"
    )
    rows = [("PID", "STATE", "REQUESTS", "RSS (MiB)", "AGE (s)", "CURRENT REQUEST")]
    for w in workers:
        rss = w.get("rss")
        rows.append(
            (
                str(w.get("pid", "?")),
                str(w.get("state", "?")),
                str(w.get("requests", 0)),
                "-" if rss is None else f"{int(rss) / 1048576:.1f}",
                f"{float(w.get('uptime', 0.0)):.0f}",
                _current(w),
            )
        )
    return summary + "\n" + _table(rows, right={2, 3, 4})


def format_stats(status: Mapping[str, Any]) -> str:
    """``status`` → totals, restarts and accept queues, one ``name  value`` line each."""
    totals = status.get("totals", {})
    workers = status.get("workers", ())
    master = status.get("master", {})
    by_class = totals.get("status", {})
    count = sum(int(n) for n in totals.get("histogram", ())) or int(totals.get("requests", 0))
    mean = float(totals.get("duration_sum", 0.0)) / count if count else 0.0
    states: dict[str, int] = {}
    for w in workers:
        states[str(w.get("state"))] = states.get(str(w.get("state")), 0) + 1
    restarts = status.get("restarts", {})
    backlog = status.get("backlog", {})
    rows = [
        ("requests", str(totals.get("requests", 0))),
        ("by status", ", ".join(f"{k} {by_class.get(k, 0)}" for k in sorted(by_class))),
        ("rejected", str(totals.get("rejected", 0))),
        ("bytes out", str(totals.get("bytes_out", 0))),
        ("mean time", f"{mean * 1000:.1f} ms"),
        ("in flight", str(sum(int(w.get("in_flight", 0)) for w in workers))),
        (
            "workers",
            f"{len(workers)} of {master.get('workers_target', '?')}"
            + "".join(f", {s} {n}" for s, n in sorted(states.items())),
        ),
        ("restarts", ", ".join(f"{r} {n}" for r, n in sorted(restarts.items())) or "none"),
    ]
    queues = [f"{name} {'?' if n is None else n}" for name, n in backlog.items()]
    rows.append(("accept queue", ", ".join(queues) or "-"))
    return _table(rows, right=set())


def format_done(command: str, data: Any) -> str:
    """A one-line confirmation for add/remove/reload/reopen."""
    if isinstance(data, Mapping):
        if isinstance(data.get("message"), str):
            return _printable(data["message"])
        target = data.get("workers_target", data.get("master", {}).get("workers_target"))
        if command in ("add", "remove") and target is not None:
            return f"{command}: ok, workers target is now {target}"
    return f"{command}: ok"


# -- command line -------------------------------------------------------------------------------

# ctl command → (control command, takes a count)
COMMANDS: Mapping[str, tuple[str, bool]] = {
    "workers": ("workers", False),
    "stats": ("status", False),
    "add": ("add", True),
    "remove": ("remove", True),
    "reload": ("reload", False),
    "reopen": ("reopen", False),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show and change the workers of a running greenhorn master.",
        epilog="The master is found by --control-socket, else by --pid, else as the only "
        "live master with a socket in the default directory ($XDG_RUNTIME_DIR, else "
        "<tmp>/greenhorn-<uid>). Exit status: 0 done, 1 no master or command refused, "
        "2 usage.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-p", "--pid", metavar="PIDFILE", help="the master's pid file (or pid)")
    where.add_argument("-s", "--control-socket", metavar="PATH", help="the control socket")
    parser.add_argument("--json", action="store_true", help="print the raw reply as JSON")
    parser.add_argument(
        "--timeout", type=float, default=CLIENT_TIMEOUT, metavar="SECONDS",
        help=f"how long to wait for the master (default {CLIENT_TIMEOUT:g})",
    )  # fmt: skip
    parser.add_argument(
        "command", nargs="?", default="workers", choices=list(COMMANDS),
        help="workers (default): the worker table; stats: totals; add/remove [N]: change "
        "the number of workers by N (default 1); reload: like HUP; reopen: like USR1",
    )  # fmt: skip
    parser.add_argument("count", nargs="?", metavar="N", help="for add and remove")
    return parser


def _out(text: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _error(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run ``greenhorn ctl`` with ``argv`` (without ``ctl``); return the exit code."""
    parser = _parser()
    try:
        ns = parser.parse_args(sys.argv[2:] if argv is None else argv)
        command, takes_count = COMMANDS[ns.command]
        if ns.count is not None and not takes_count:
            parser.error(f"{ns.command} takes no argument")
        if takes_count and ns.count is not None and not (ns.count.isdigit() and int(ns.count)):
            parser.error(f"N must be a positive integer, not {ns.count!r}")
        if ns.timeout <= 0:
            parser.error("--timeout must be positive")
    except SystemExit as exc:  # -h, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    args = [ns.count or "1"] if takes_count else []
    try:
        data = request(locate(ns.control_socket, ns.pid), command, args, ns.timeout)
    except CtlError as exc:
        return _error(str(exc))
    if ns.json:
        _out(json.dumps(data, indent=2, sort_keys=True))
    elif ns.command == "workers":
        _out(format_workers(data))
    elif ns.command == "stats":
        _out(format_stats(data))
    else:
        _out(format_done(ns.command, data))
    return 0
