"""Listening sockets: bind ``--bind`` addresses, inherit them, close them.

Why a module of its own: the arbiter needs three verbs about sockets (bind, inherit,
close) and every one of them has sharp edges that deserve tests of their own: stale UNIX
socket files, umask on the socket file, SO_REUSEPORT, fds handed over by systemd or by a
master that re-executes itself on USR2.

Rules:
- No Config here. Functions take plain values; the arbiter passes ``cfg.bind``,
  ``cfg.backlog``, ``cfg.reuse_port``, ``cfg.umask``.
- Every listener is non-blocking and close-on-exec. Workers are forked, not exec'd, so they
  still get the sockets; the only exec is the USR2 re-exec, which calls
  ``make_inheritable`` right before ``os.execve`` and passes ``fds_env`` in the environment.
- A UNIX socket file is unlinked only when the caller says so (final stop, not USR2) and
  only if the path still names the inode we created (another server may have replaced it).
- Errors are one line: ``ValueError`` for a malformed address (a usage error), ``BindError``
  (an ``OSError``) for an address that cannot be bound, e.g.
  ``Can't connect to ('127.0.0.1', 8000): Address already in use``.

The address grammar is ``greenhorn.config.addresses`` (the settings check addresses with
the same parser). Port 0 asks the kernel for a free port; ``Listener.name`` reports the
real one.

Man pages: socket(7), unix(7), ipv6(7), sd_listen_fds(3).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from functools import partial
from typing import Literal

from greenhorn.config.addresses import FD_RE, Address, parse_address
from greenhorn.master import systemd

REEXEC_FD_ENV = "GREENHORN_FD"
COMPAT_FD_ENV = "GUNICORN_FD"  # what a gunicorn master sets; accepted for drop-in use

# errnos worth waiting for: the previous server may still be shutting down, or the
# interface address may not be configured yet at boot. Anything else fails at once.
_RETRY_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})

Origin = Literal["bind", "fd", "systemd", "reexec"]


class BindError(OSError):
    """An address could not be bound or an inherited fd could not be used.

    ``str()`` is the one-line message for the error log; ``errno`` is kept when known.
    """

    def __init__(self, message: str, err: int | None = None) -> None:
        if err is None:
            super().__init__(message)
        else:
            super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Listener:
    """One listening socket plus what the arbiter needs to report and close it.

    ``origin`` says where the socket came from: ``"bind"`` (we bound it), ``"fd"``
    (``fd://N``), ``"systemd"`` (LISTEN_FDS) or ``"reexec"`` (GREENHORN_FD/GUNICORN_FD).
    ``fdname`` is the systemd FileDescriptorName= when there is one.
    """

    def __init__(
        self,
        sock: socket.socket,
        address: Address,
        *,
        origin: Origin = "bind",
        fdname: str | None = None,
    ) -> None:
        self.sock = sock
        self.address = address
        self.origin: Origin = origin
        self.fdname = fdname
        # Computed once: getsockname() no longer works after close().
        self.name = self.url("http")
        self._owned: tuple[str, int, int, int] | None = None
        if sock.family == socket.AF_UNIX and origin in ("bind", "reexec"):
            # Files of sockets passed by systemd or by fd://N belong to whoever made them.
            self._owned = _socket_file_identity(address.path)

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family (AF_INET, AF_INET6 or AF_UNIX)."""
        return self.sock.family

    @property
    def port(self) -> int | None:
        """The real bound TCP port (useful after binding port 0); None for UNIX sockets."""
        return self.address.port if self.address.kind == "tcp" else None

    def url(self, scheme: str = "http") -> str:
        """How to reach the listener: ``http://127.0.0.1:8000``, ``http://[::1]:8000``,
        ``unix:/run/app.sock``. ``name`` is ``url("http")``; pass ``"https"`` for TLS."""
        if self.address.kind == "unix":
            return f"unix:{self.address.path}"
        if self.sock.family == socket.AF_INET6:
            return f"{scheme}://[{self.address.host}]:{self.address.port}"
        return f"{scheme}://{self.address.host}:{self.address.port}"

    def fileno(self) -> int:
        """The listening fd (-1 once closed)."""
        return self.sock.fileno()

    def close(self, unlink: bool = False) -> None:
        """Close the socket; with ``unlink``, also remove our UNIX socket file.

        Pass ``unlink=False`` when another master keeps serving on the same socket (USR2
        re-exec), ``True`` on the final stop. The file is removed only if the path still
        names the inode we bound, so a socket file recreated by another server survives.
        """
        with contextlib.suppress(OSError):
            self.sock.close()
        owned, self._owned = self._owned, None
        if unlink and owned is not None:
            path = owned[0]
            if _socket_file_identity(path) == owned:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def __repr__(self) -> str:
        return f"<Listener {self.name} fd={self.fileno()} origin={self.origin}>"


def _socket_file_identity(path: str | None) -> tuple[str, int, int, int] | None:
    """(absolute path, st_dev, st_ino, st_ctime_ns) of a socket file; None if absent or
    abstract. ctime tells apart a new file that got the inode number of a deleted one."""
    if not path or path.startswith("@"):
        return None
    path = os.path.abspath(path)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    return (path, st.st_dev, st.st_ino, st.st_ctime_ns)


def _address_of(sock: socket.socket) -> Address:
    """The Address a bound socket really has (the real port after binding port 0)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):  # abstract namespace: b"\0name"
            name = "@" + name[1:].decode(errors="replace")
        return Address("unix", path=name)
    return Address("tcp", host=name[0], port=name[1])


def _finish(sock: socket.socket, backlog: int) -> None:
    """listen() unless already listening (systemd sockets; SELinux may deny a second
    listen()), then non-blocking and close-on-exec."""
    listening = False
    with contextlib.suppress(OSError):
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    if not listening:
        sock.listen(backlog)
    sock.setblocking(False)
    sock.set_inheritable(False)


def _set_reuse_port(sock: socket.socket) -> None:
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    except OSError as exc:  # kernel or family without SO_REUSEPORT: carry on without it
        if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            raise


def _bind_tcp(address: Address, backlog: int, reuse_port: bool, v6only: bool) -> Listener:
    family = socket.AF_INET6 if address.is_ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            _set_reuse_port(sock)
        if family == socket.AF_INET6 and v6only:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Set on the listener: Linux copies it to every accepted socket, which saves the
        # workers one setsockopt per connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address.host, address.port))
        _finish(sock, backlog)
    except BaseException:
        sock.close()
        raise
    return Listener(sock, _address_of(sock), origin="bind")


def socket_file_at(path: str, refusal: str) -> bool:
    """True when ``path`` is a socket file, False when nothing is there; ``BindError``
    (``refusal``) when something else is: a socket file is the only kind ever removed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise BindError(refusal)
    return True


def _remove_stale_unix_socket(path: str) -> None:
    """Remove ``path`` if it is a socket file nobody listens on.

    A live socket (connect succeeds) raises EADDRINUSE so the caller retries as for a busy
    TCP port. A path that is not a socket is never deleted (BindError at once).
    """
    if not socket_file_at(path, f"Can't connect to {path}: exists and is not a socket"):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except (TimeoutError, BlockingIOError):
        pass  # backlog full: somebody is listening
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))


def _bind_unix(
    address: Address,
    backlog: int,
    umask: int | None,
    mode: int | None,
    owner: tuple[int, int] | None,
) -> Listener:
    path = str(address.path)
    _remove_stale_unix_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    created = False
    try:
        bind_unix(sock, path, umask)
        created = True
        if mode is not None:
            os.chmod(path, mode)
        if owner is not None:
            st = os.stat(path)
            if (st.st_uid, st.st_gid) != owner:
                os.chown(path, owner[0], owner[1])
        _finish(sock, backlog)
    except BaseException:
        sock.close()
        if created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return Listener(sock, Address("unix", path=path), origin="bind")


def bind_unix(sock: socket.socket, path: str, umask: int | None) -> None:
    """Bind a UNIX socket to ``path`` with ``umask`` in force: the kernel creates the file
    with mode 0777 & ~umask, so setting the umask around bind() (as gunicorn does) leaves
    no window with looser permissions."""
    old_umask = os.umask(umask) if umask is not None else None
    try:
        sock.bind(path)
    finally:
        if old_umask is not None:
            os.umask(old_umask)


def adopt_fd(fd: int, backlog: int, origin: Origin = "fd", fdname: str | None = None) -> Listener:
    """Wrap an already open socket fd (``fd://N``, LISTEN_FDS, GREENHORN_FD).

    The family is read from the fd. The Listener owns the fd from then on. BindError if the
    fd is not an open stream socket of family AF_INET, AF_INET6 or AF_UNIX.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"fd {fd} is not an open socket: {exc.strerror or exc}", exc.errno)
    try:
        kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            raise BindError(f"fd {fd} has unsupported socket family {sock.family!r}")
        if kind != socket.SOCK_STREAM:
            raise BindError(f"fd {fd} is not a stream socket")
        _finish(sock, backlog)
        return Listener(sock, _address_of(sock), origin=origin, fdname=fdname)
    except BindError:
        sock.detach()  # not ours to close: leave the fd as we found it
        raise
    except OSError as exc:
        sock.detach()
        raise BindError(f"fd {fd}: {exc.strerror or exc}", exc.errno)


def _v6only_ports(addresses: Sequence[Address]) -> set[int]:
    """Ports bound on both an IPv4 and an IPv6 address in the same bind list.

    Linux IPv6 sockets accept IPv4 too by default (net.ipv6.bindv6only=0), so gunicorn
    fails on ``-b 0.0.0.0:8000 -b [::]:8000`` with "Connection in use". For those ports we
    set IPV6_V6ONLY so both binds succeed; a lone ``[::]:8000`` keeps the kernel default
    and still serves IPv4, as with gunicorn.
    """
    v4 = {a.port for a in addresses if a.kind == "tcp" and not a.is_ipv6 and a.port}
    return {a.port for a in addresses if a.is_ipv6 and a.port in v4 and a.port is not None}


def bind_listeners(
    binds: Iterable[str | Address],
    backlog: int = 2048,
    reuse_port: bool = False,
    umask: int | None = None,
    unix_mode: int | None = None,
    owner: tuple[int, int] | None = None,
    attempts: int = 5,
    retry_delay: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> list[Listener]:
    """Bind every address, in order, and return the listeners.

    TCP: SO_REUSEADDR, SO_REUSEPORT when ``reuse_port``, TCP_NODELAY, IPV6_V6ONLY only
    when the same port is also bound on IPv4. UNIX: a stale socket file is removed, a live
    one is "Address already in use", a non-socket file is an error; the file mode follows
    ``umask`` (or is ``unix_mode`` when given) and is chowned to ``owner`` (uid, gid).
    ``fd://N`` adopts that fd. Busy addresses (EADDRINUSE, EADDRNOTAVAIL) are tried
    ``attempts`` times, ``retry_delay`` seconds apart, reporting each failure through
    ``log`` (gunicorn: 5 tries, 1 s). Other errors fail at once. On failure every listener
    bound so far is closed and BindError is raised (one line, gunicorn's "Can't connect to").
    """
    addresses: list[Address] = []
    for bind in binds:
        address = parse_address(bind) if isinstance(bind, str) else bind
        # The same fixed address twice would only fail after all retries: bind it once.
        if address in addresses and not (address.kind == "tcp" and address.port == 0):
            continue
        addresses.append(address)
    v6only = _v6only_ports(addresses)
    listeners: list[Listener] = []
    try:
        for a in addresses:
            attempt = partial(
                _bind_one, a, backlog, reuse_port, a.port in v6only, umask, unix_mode, owner
            )
            listeners.append(_bind_with_retry(a, attempt, attempts, retry_delay, log))
    except BaseException:
        close_listeners(listeners, unlink=True)
        raise
    return listeners


def _bind_one(
    address: Address,
    backlog: int,
    reuse_port: bool,
    v6only: bool,
    umask: int | None,
    unix_mode: int | None,
    owner: tuple[int, int] | None,
) -> Listener:
    if address.kind == "fd":
        return adopt_fd(int(address.fd or 0), backlog, origin="fd")
    if address.kind == "unix":
        return _bind_unix(address, backlog, umask, unix_mode, owner)
    return _bind_tcp(address, backlog, reuse_port, v6only)


def _bind_with_retry(
    address: Address,
    bind: Callable[[], Listener],
    attempts: int,
    retry_delay: float,
    log: Callable[[str], None] | None,
) -> Listener:
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return bind()
        except BindError:
            raise
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno not in _RETRY_ERRNOS or attempt == attempts:
                raise BindError(f"Can't connect to {address}: {reason}", exc.errno) from exc
            if log is not None:
                if exc.errno == errno.EADDRINUSE:
                    log(f"Connection in use: {address}")
                else:
                    log(f"Invalid address: {address}")
                log(f"Retrying in {retry_delay:g} second{'' if retry_delay == 1 else 's'}.")
            time.sleep(retry_delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def inherited_listeners(
    environ: Mapping[str, str], pid: int | None = None, backlog: int = 2048
) -> list[Listener] | None:
    """Listeners handed over at startup, or None when there are none (then bind).

    1. systemd socket activation: LISTEN_FDS fds from 3 on, only when LISTEN_PID is our
       pid (``pid`` overrides ``os.getpid()``); names from LISTEN_FDNAMES. These win over
       any ``--bind``.
    2. ``GREENHORN_FD`` (or gunicorn's ``GUNICORN_FD``): comma-separated fds from a
       master that re-executed itself on USR2.

    The variables are removed from ``environ`` when it is mutable (os.environ), so workers
    and app subprocesses do not see them. Initialise setproctitle before calling this
    with os.environ (``cli.main`` does it first thing): unsetting variables first
    breaks setproctitle (gunicorn #3430). BindError if an fd is unusable.
    """
    names = systemd.listen_fdnames(environ)  # read before listen_fds() unsets it
    count = systemd.listen_fds(environ, unset_environment=True, pid=pid)
    raw = environ.get(REEXEC_FD_ENV) or environ.get(COMPAT_FD_ENV)
    if isinstance(environ, MutableMapping):
        environ.pop(REEXEC_FD_ENV, None)
        environ.pop(COMPAT_FD_ENV, None)
    if count > 0:
        start = systemd.SD_LISTEN_FDS_START
        names = (names + ["unknown"] * count)[:count]
        return _adopt_all(
            list(zip(range(start, start + count), names, strict=True)), backlog, "systemd"
        )
    if not raw:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not all(FD_RE.fullmatch(item) for item in items):
        raise BindError(f"invalid {REEXEC_FD_ENV} value {raw!r}: expected fds like 3,4")
    return _adopt_all([(int(item), None) for item in items], backlog, "reexec") or None


def _adopt_all(
    fds: Sequence[tuple[int, str | None]], backlog: int, origin: Origin
) -> list[Listener]:
    listeners: list[Listener] = []
    try:
        for fd, name in fds:
            listeners.append(adopt_fd(fd, backlog, origin=origin, fdname=name))
    except BaseException:
        for listener in listeners:
            listener.sock.detach()
        raise
    return listeners


def fds_env(listeners: Sequence[Listener], pid: int | None = None) -> dict[str, str]:
    """Environment telling a re-executed master which fds are its listeners.

    Normally ``{"GREENHORN_FD": "3,4"}``. When the listeners came from systemd (so they
    sit at fds 3, 4, ... in order), hand them on the way systemd did: LISTEN_FDS,
    LISTEN_PID and LISTEN_FDNAMES, so the new master still knows systemd owns the socket
    files. ``pid`` is the pid that will exec (default: the caller): call this in the forked
    child right before exec.
    """
    fds = [listener.fileno() for listener in listeners]
    start = systemd.SD_LISTEN_FDS_START
    from_systemd = bool(listeners) and all(lnr.origin == "systemd" for lnr in listeners)
    if from_systemd and fds == list(range(start, start + len(fds))):
        return {
            "LISTEN_FDS": str(len(fds)),
            "LISTEN_PID": str(os.getpid() if pid is None else pid),
            "LISTEN_FDNAMES": ":".join(lnr.fdname or "unknown" for lnr in listeners),
        }
    return {REEXEC_FD_ENV: ",".join(str(fd) for fd in fds)}


def make_inheritable(listeners: Iterable[Listener]) -> None:
    """Clear close-on-exec on the listener fds; call right before the USR2 exec."""
    for listener in listeners:
        os.set_inheritable(listener.fileno(), True)


def defer_accept(listeners: Iterable[Listener], seconds: int) -> None:
    """TCP_DEFER_ACCEPT on TCP listeners (Linux; nginx's ``listen ... deferred``): a
    connection is queued for ``accept`` once its first bytes arrived (or after ``seconds``
    of silence), so a worker never accepts only to wait for the request. 0: off."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None:
        return
    for listener in listeners:
        if listener.sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                listener.sock.setsockopt(socket.IPPROTO_TCP, option, max(0, int(seconds)))
            except OSError:
                pass


def close_listeners(listeners: Iterable[Listener], unlink: bool) -> None:
    """Close every listener; ``unlink`` as for ``Listener.close``. Never raises."""
    for listener in listeners:
        listener.close(unlink=unlink)


_TCP_INFO_UNACKED = 24  # struct tcp_info: for a LISTEN socket, tcpi_unacked = accept queue length


def accept_queue(sock: socket.socket) -> int | None:
    """Connections waiting in the kernel's accept queue of a listening TCP socket."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        queued: int = struct.unpack_from("I", info, _TCP_INFO_UNACKED)[0]
    except (OSError, struct.error):
        return None
    return queued


class Listeners:
    """The master's listening sockets (gunicorn's ``LISTENERS`` is ``self.sockets``).

    Opened once at start (handed over by systemd or a USR2 parent, else bound from
    ``bind``), rebound on HUP only when ``bind`` changed, closed at the end: the socket
    files are unlinked only when no other master keeps serving on them (``unlink``).
    """

    def __init__(self) -> None:
        self.sockets: list[Listener] = []

    def __iter__(self) -> Iterator[Listener]:
        return iter(self.sockets)

    def open(
        self,
        bind: Sequence[str],
        *,
        backlog: int,
        reuse_port: bool,
        umask: int,
        defer: int,
        owner: tuple[int, int] | None,
        log: Callable[[str], None],
    ) -> None:
        """Inherit the listeners (systemd, USR2), else bind ``bind``; BindError/ValueError."""
        found = inherited_listeners(os.environ, backlog=backlog)
        if not found:
            found = bind_listeners(
                bind, backlog=backlog, reuse_port=reuse_port, umask=umask, owner=owner, log=log
            )
        defer_accept(found, defer)
        self.sockets = found

    def rebind(self, bind: Sequence[str], *, backlog: int, reuse_port: bool, defer: int) -> None:
        """HUP with a new ``bind``: bind it, then close the old listeners (only then: a
        failure keeps the old ones). BindError/ValueError."""
        new = bind_listeners(bind, backlog=backlog, reuse_port=reuse_port)
        defer_accept(new, defer)
        close_listeners(self.sockets, unlink=True)
        self.sockets = new

    def close(self, unlink: bool) -> None:
        close_listeners(self.sockets, unlink=unlink)

    def all_bound_here(self) -> bool:
        """Every socket was bound by this master: none outlives it in systemd, in whoever
        passed ``fd://N`` or in a USR2 parent (so a full stop may change them for good)."""
        return all(listener.origin == "bind" for listener in self.sockets)

    def backlog(self) -> int:
        """Connections waiting in the kernel's accept queues, all listeners together."""
        return sum(accept_queue(listener.sock) or 0 for listener in self.sockets)

    def queues(self) -> dict[str, int | None]:
        """Each listener's accept queue (None where the kernel does not say)."""
        return {listener.name: accept_queue(listener.sock) for listener in self.sockets}

    def names(self) -> list[str]:
        return [listener.name for listener in self.sockets]

    def hand_over(self) -> dict[str, str]:
        """In the USR2 child right before exec: the fds stay open across it, and the
        environment that tells the new master which they are."""
        make_inheritable(self.sockets)
        return fds_env(self.sockets)
