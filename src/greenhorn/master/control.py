"""The master's control socket: the server side of ``greenhorn ctl``.

Why: signals can add or remove a worker, but they cannot answer "what is each worker doing
right now?". The master already knows (the per-worker scoreboards in ``ipc/scoreboard.py``),
so it answers on a UNIX control socket. ``ControlServer(path, mode)`` is a non-blocking
``StreamEndpoint`` (``endpoints.py``) driven by the master's ``select`` loop: ``fds()``,
``handle(fd, dispatch)``, ``expire(now)``, ``close()`` (also removes the socket file, if it
is still ours), ``close_in_child()`` (after fork: close fds, touch no file).

Protocol: one connection, one request, one reply, each a single line of strict JSON::

    → {"command": "add", "args": ["2"]}
    ← {"ok": true, "data": {...}}            or   {"ok": false, "error": "one line"}

``dispatch(command, args) -> dict`` is ``run_command`` over the arbiter (the commands and
what they do are below); a ValueError it raises is the user's mistake and its message is
sent back; anything else is reported as an internal error (the master keeps running).

Where the socket lives when none is configured (``default_socket_path``) is decided here
too; the client, ``greenhorn.ctl``, looks in the same places.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import stat
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from greenhorn.ipc.scoreboard import system_tmp_dir
from greenhorn.master.endpoints import StreamEndpoint
from greenhorn.master.listeners import BindError, bind_unix, socket_file_at

__all__ = [
    "ControlServer",
    "Controlled",
    "answer",
    "candidate_paths",
    "default_socket_path",
    "run_command",
]

MAX_LINE = 8192  # bytes of one request line
SOCKET_NAME = re.compile(r"greenhorn-(\d+)\.ctl")
Dispatch = Callable[[str, list[str]], Mapping[str, Any]]


# -- where the socket lives -------------------------------------------------------------------


def runtime_dir() -> str | None:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    usable = os.path.isabs(runtime) and os.path.isdir(runtime)
    return runtime if usable and os.access(runtime, os.W_OK | os.X_OK) else None


def tmp_dir(uid: int) -> str:
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
    runtime = runtime_dir()
    if runtime is not None:
        return os.path.join(runtime, f"greenhorn-{pid}.ctl")
    directory = tmp_dir(os.geteuid())
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
        paths.append(os.path.join(tmp_dir(uid), name))
        paths.append(os.path.join(f"/run/user/{uid}", name))
    return list(dict.fromkeys(paths))


def listening(path: str) -> bool:
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


# -- the commands ------------------------------------------------------------------------------


class Controlled(Protocol):
    """What the commands need of the master (``Arbiter`` has it)."""

    @property
    def generation(self) -> int: ...

    def status(self) -> dict[str, Any]: ...

    def add_workers(self, delta: int) -> int: ...

    def reload(self) -> None: ...

    def reopen_logs(self) -> None: ...

    def show_config(self) -> dict[str, Any]: ...

    def show_listeners(self) -> list[dict[str, Any]]: ...

    def kill_worker(self, pid: int) -> None: ...

    def shutdown(self, graceful: bool) -> None: ...


def run_command(master: Controlled, command: str, args: list[str]) -> dict[str, Any]:
    """One ``greenhorn ctl`` command (ValueError for a bad one): ``workers``/``status``/
    ``stats`` (the status), ``add``/``remove`` N (like TTIN/TTOU N times), ``reload``
    (like HUP), ``reopen`` (like USR1), and what gunicornc has besides: ``config`` (every
    setting), ``listeners``, ``kill`` PID (TERM to that worker; it is replaced),
    ``shutdown`` ``graceful``|``quick`` (like TERM or INT)."""
    if command in ("workers", "status", "stats"):
        return master.status()
    if command in ("add", "remove"):
        try:
            n = int(args[0]) if args else 1
        except ValueError:
            raise ValueError(f"{command}: expected a number, got {args[0]!r}") from None
        if n < 1:
            raise ValueError(f"{command}: expected a positive number")
        return {"workers_target": master.add_workers(n if command == "add" else -n)}
    if command == "reload":
        master.reload()
        return {"generation": master.generation}
    if command == "reopen":
        master.reopen_logs()
        return {}
    if command == "config":
        return {"settings": master.show_config()}
    if command == "listeners":
        return {"listeners": master.show_listeners()}
    if command == "kill":
        if len(args) != 1 or not args[0].isdigit():
            raise ValueError("kill: expected a worker PID")
        master.kill_worker(int(args[0]))
        return {"killed": int(args[0])}
    if command == "shutdown":
        mode = args[0] if args else "graceful"
        if mode not in ("graceful", "quick"):
            raise ValueError(f"shutdown: expected graceful or quick, not {mode!r}")
        master.shutdown(graceful=mode == "graceful")
        return {"mode": mode}
    raise ValueError(f"unknown command {command!r}")


# -- the server ------------------------------------------------------------------------------


def _jsonable(value: object) -> object:
    """Make ``value`` strict JSON: non-finite floats become "+Inf"/"-Inf"/"NaN"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def json_line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str).encode() + b"\n"


def _error_line(message: str) -> bytes:
    return json_line({"ok": False, "error": " ".join(message.split())})


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
        return json_line({"ok": True, "data": _jsonable(result)})
    except (TypeError, ValueError) as exc:
        return _error_line(f"internal error: cannot encode the reply: {exc}")


def _clear_stale(path: str, takeover: bool) -> None:
    """Remove a socket file nobody listens on; refuse to touch anything else."""
    if not socket_file_at(
        path, f"Control socket {path} exists and is not a socket; not removing it"
    ):
        return
    if not takeover and listening(path):
        raise BindError(f"Control socket {path} is in use by another running master")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ControlServer(StreamEndpoint):
    """The master's control socket at ``path`` (file mode ``mode``).

    Raises ``greenhorn.master.listeners.BindError`` (one line) when the path holds something that is
    not a socket, when another live master answers on it (unless ``takeover``: then the new
    master takes the name, e.g. after USR2), or when it cannot be bound.
    """

    def __init__(
        self, path: str, dispatch: Dispatch, mode: int = 0o600, *, takeover: bool = False
    ) -> None:
        self.path = os.path.abspath(path)
        _clear_stale(self.path, takeover)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            bind_unix(sock, self.path, 0o777 & ~mode)
            bound = True
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
        self.dispatch = dispatch
        super().__init__(
            sock,
            self._answer,
            name=f"unix:{self.path}",
            max_request=MAX_LINE,
            overflow_reply=_error_line("request too large"),
        )

    def _answer(self, data: bytes, eof: bool) -> bytes | None:
        return answer(data, eof, self.dispatch)

    def close(self) -> None:
        """Close everything and remove the socket file if it is still the one we bound."""
        super().close()
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
        super().close_in_child()
