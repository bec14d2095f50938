"""`greenhorn ctl`: talk to a running master over its UNIX control socket.

Why: signals can add or remove a worker, but they cannot answer "what is each worker doing
right now?"; the master answers that on its control socket (``master/control.py``, the
server side and the protocol). This module is the client: it runs in the user's shell, not
in the server.

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
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenhorn.ipc.signals import is_alive
from greenhorn.master.control import (
    SOCKET_NAME,
    candidate_paths,
    json_line,
    listening,
    runtime_dir,
    tmp_dir,
)
from greenhorn.master.pidfile import read_pid

__all__ = ["CtlError", "NoMaster", "main", "request"]

PROG = "greenhorn ctl"
MAX_REPLY = 64 * 1024 * 1024
CLIENT_TIMEOUT = 5.0


# -- client side --------------------------------------------------------------------------------


class CtlError(Exception):
    """The command failed; ``str()`` is one line for the terminal."""


class NoMaster(CtlError):
    """No master answers: no pid file, a dead pid, no socket, or the socket refuses."""


def request(
    path: str, command: str, args: Sequence[str] = (), timeout: float = CLIENT_TIMEOUT
) -> object:
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


def _exchange(sock: socket.socket, path: str, message: Mapping[str, Any], timeout: float) -> object:
    chunks: list[bytes] = []
    size = 0
    try:
        sock.sendall(json_line(message))
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
    dirs = [d for d in (runtime_dir(), tmp_dir(os.geteuid())) if d]
    found: dict[int, str] = {}
    for directory in dirs:
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(directory)):
                m = SOCKET_NAME.fullmatch(entry)
                pid = int(m.group(1)) if m else 0
                path = os.path.join(directory, entry)
                if pid and pid not in found and is_alive(pid) and listening(path):
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


def _table(rows: Sequence[tuple[str, ...]], right: set[int]) -> str:
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


def format_config(data: Mapping[str, Any]) -> str:
    """``config`` → one ``name = value`` line per setting, values as JSON."""
    settings = data.get("settings", {})
    if not settings:
        return "(no settings)"
    width = max(len(str(name)) for name in settings)
    return "\n".join(
        f"{name:<{width}} = {_printable(json.dumps(value))}" for name, value in settings.items()
    )


def format_listeners(data: Mapping[str, Any]) -> str:
    """``listeners`` → one table row per listening socket."""
    rows = [("ADDRESS", "TYPE", "FD", "FROM", "ACCEPT QUEUE")]
    for item in data.get("listeners", ()):
        queue = item.get("queue")
        rows.append(
            (
                _printable(str(item.get("address", "?"))),
                str(item.get("type", "?")),
                str(item.get("fd", "?")),
                str(item.get("origin", "?")),
                "-" if queue is None else str(queue),
            )
        )
    return _table(rows, right={2, 4})


def format_done(command: str, data: object) -> str:
    """A one-line confirmation for add/remove/reload/reopen."""
    if isinstance(data, Mapping):
        if isinstance(data.get("message"), str):
            return _printable(data["message"])
        target = data.get("workers_target", data.get("master", {}).get("workers_target"))
        if command in ("add", "remove") and target is not None:
            return f"{command}: ok, workers target is now {target}"
        if command == "kill" and data.get("killed") is not None:
            return f"worker kill: sent TERM to worker {data['killed']}"
        if command == "shutdown" and data.get("mode") is not None:
            return f"shutdown: ok, the master is stopping ({data['mode']})"
    return f"{command}: ok"


# -- command line -------------------------------------------------------------------------------

# what the user types (gunicornc's phrases too) → (control command, what its one argument is)
PHRASES: Mapping[tuple[str, ...], tuple[str, str | None]] = {
    ("workers",): ("workers", None),
    ("show", "workers"): ("workers", None),
    ("stats",): ("status", None),
    ("show", "stats"): ("status", None),
    ("add",): ("add", "count"),
    ("worker", "add"): ("add", "count"),
    ("remove",): ("remove", "count"),
    ("worker", "remove"): ("remove", "count"),
    ("reload",): ("reload", None),
    ("reopen",): ("reopen", None),
    ("show", "config"): ("config", None),
    ("show", "listeners"): ("listeners", None),
    ("worker", "kill"): ("kill", "pid"),
    ("shutdown",): ("shutdown", "mode"),
}
SHUTDOWN_MODES = ("graceful", "quick")


def parse_words(words: Sequence[str]) -> tuple[str, list[str]]:
    """The words after the options → (control command, its arguments); ValueError with a
    one-line message for words that are no command."""
    words = [w.lower() for w in words[:2]] + list(words[2:]) if words else ["workers"]
    for size in (2, 1):
        phrase = tuple(words[:size])
        if phrase not in PHRASES:
            continue
        command, takes = PHRASES[phrase]
        rest = list(words[size:])
        name = " ".join(phrase)
        if len(rest) > (takes is not None):
            raise ValueError(f"{name}: unexpected {' '.join(rest)!r}")
        if takes is None:
            return command, []
        if takes == "count":
            count = rest[0] if rest else "1"
            if not (count.isdigit() and int(count)):
                raise ValueError(f"N must be a positive integer, not {count!r}")
            return command, [count]
        if takes == "pid":
            if not rest or not rest[0].isdigit():
                raise ValueError(f"{name}: expected a worker PID")
            return command, rest
        mode = rest[0].lower() if rest else "graceful"
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"{name}: expected graceful or quick, not {rest[0]!r}")
        return command, [mode]
    raise ValueError(f"unknown command {' '.join(words)!r}")


FORMATS: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "workers": format_workers,
    "status": format_stats,
    "config": format_config,
    "listeners": format_listeners,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show and change a running greenhorn master and its workers.",
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
        "command", nargs="*", metavar="COMMAND",
        help="workers (default; or show workers): the worker table; stats (show stats): "
        "totals; add/remove [N] (worker add/remove [N]): change the number of workers by N "
        "(default 1); reload: like HUP; reopen: like USR1; show config: the settings the "
        "master runs with; show listeners: its listening sockets; worker kill PID: stop "
        "that worker gracefully (TERM; the master replaces it); shutdown [graceful|quick]: "
        "stop the server (like TERM, or INT)",
    )  # fmt: skip
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
        ns = parser.parse_intermixed_args(sys.argv[2:] if argv is None else argv)
        try:
            command, args = parse_words(ns.command)
        except ValueError as exc:
            parser.error(str(exc))
        if ns.timeout <= 0:
            parser.error("--timeout must be positive")
    except SystemExit as exc:  # -h, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    try:
        data = request(locate(ns.control_socket, ns.pid), command, args, ns.timeout)
    except CtlError as exc:
        return _error(str(exc))
    if ns.json:
        _out(json.dumps(data, indent=2, sort_keys=True))
    elif command in FORMATS:
        if not isinstance(data, Mapping):
            return _error(f"unexpected reply from the master to {command}")
        _out(FORMATS[command](data))
    else:
        _out(format_done(command, data))
    return 0
