"""greenhorn.master.listeners: address parsing, binding, UNIX socket files, inherited fds.

Real sockets on 127.0.0.1 (port 0) and UNIX sockets in tmp_path; inheritance through real
subprocesses (pass_fds, systemd-socket-activate).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from greenhorn.config.addresses import Address, parse_address
from greenhorn.master import listeners as sockets
from greenhorn.master.listeners import BindError, Listener, bind_listeners

# -- parse_address ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1:8000", Address("tcp", host="127.0.0.1", port=8000)),
        ("127.0.0.1:0", Address("tcp", host="127.0.0.1", port=0)),
        (":9000", Address("tcp", host="0.0.0.0", port=9000)),
        ("example.org", Address("tcp", host="example.org", port=8000)),
        ("LocalHost:80", Address("tcp", host="localhost", port=80)),
        ("  127.0.0.1:81 ", Address("tcp", host="127.0.0.1", port=81)),
        ("[::1]:8001", Address("tcp", host="::1", port=8001)),
        ("[::]:8002", Address("tcp", host="::", port=8002)),
        ("[::1]", Address("tcp", host="::1", port=8000)),
        ("[FE80::1]:5", Address("tcp", host="fe80::1", port=5)),
        ("tcp://10.0.0.1:65535", Address("tcp", host="10.0.0.1", port=65535)),
        ("tcp://[::1]:7", Address("tcp", host="::1", port=7)),
        ("unix:/run/app.sock", Address("unix", path="/run/app.sock")),
        ("unix:relative.sock", Address("unix", path="relative.sock")),
        ("unix:///run/app.sock", Address("unix", path="/run/app.sock")),
        ("fd://3", Address("fd", fd=3)),
    ],
)
def test_parse_address_valid(bind: str, expected: Address) -> None:
    assert parse_address(bind) == expected


@pytest.mark.parametrize(
    "bind",
    [
        "",
        "   ",
        ":99999",
        ":65536",
        "host:abc",
        "host:",
        "host:-1",
        "host:+80",
        "host:8_0",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[nothost]:80",
        "::1",
        "::1:8000",
        "a]:80",
        "unix:",
        "unix://",
        "fd://",
        "fd://x",
        "fd://-1",
        "http://127.0.0.1:8000",
        "ho st:80",
    ],
)
def test_parse_address_invalid_is_one_line_value_error(bind: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(bind)
    message = str(info.value)
    assert message and "\n" not in message
    assert repr(bind) in message or repr(bind.strip()) in message


def test_address_str_matches_gunicorn_log_shape() -> None:
    assert str(parse_address("127.0.0.1:8000")) == "('127.0.0.1', 8000)"
    assert str(parse_address("unix:/tmp/x.sock")) == "/tmp/x.sock"
    assert str(parse_address("fd://4")) == "fd://4"
    assert parse_address("[::1]:1").is_ipv6 and not parse_address("127.0.0.1:1").is_ipv6


# -- TCP -------------------------------------------------------------------------------


@pytest.fixture
def listeners():
    """Collects listeners made by a test and closes them (unlinking files) afterwards."""
    made: list[Listener] = []
    yield made
    sockets.close_listeners(made, unlink=True)


def _connect(address: tuple[str, int] | str, family: int = socket.AF_INET) -> socket.socket:
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(5)
    try:
        client.connect(address)
    except OSError:
        client.close()
        raise
    return client


def _accept(listener: Listener, timeout: float = 5.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn, _ = listener.sock.accept()
            return conn
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError("no connection to accept") from None
            time.sleep(0.01)


def test_bind_tcp_port_zero_reports_real_port(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0"], backlog=16)
    (lnr,) = listeners
    port = lnr.sock.getsockname()[1]
    assert port != 0 and lnr.port == port
    assert lnr.name == f"http://127.0.0.1:{port}"
    assert lnr.url("https") == f"https://127.0.0.1:{port}"
    assert lnr.address == Address("tcp", host="127.0.0.1", port=port)
    assert lnr.origin == "bind" and lnr.family == socket.AF_INET
    assert lnr.fileno() == lnr.sock.fileno() >= 0
    assert lnr.sock.getblocking() is False
    assert os.get_inheritable(lnr.fileno()) is False
    assert lnr.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    assert lnr.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_accepted_sockets_get_tcp_nodelay(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0"])
    with _connect(("127.0.0.1", listeners[0].port)):
        conn = _accept(listeners[0])
        with conn:
            # Linux copies TCP_NODELAY from the listener: workers never set it themselves.
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_defer_accept_on_tcp_listeners_only(listeners: list[Listener], tmp_path) -> None:
    listeners += bind_listeners(["127.0.0.1:0", f"unix:{tmp_path}/s.sock"])
    sockets.defer_accept(listeners, 1)
    assert listeners[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) >= 1
    sockets.defer_accept(listeners, 0)
    assert listeners[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0


def test_hostname_binds_ipv4(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["localhost:0"])
    assert listeners[0].name.startswith("http://127.")


def test_reuse_port_allows_two_listeners_on_one_port(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0"], reuse_port=True)
    port = listeners[0].port
    listeners += bind_listeners([f"127.0.0.1:{port}"], reuse_port=True)
    assert listeners[1].port == port
    assert listeners[1].sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0


def test_busy_port_retries_then_raises_one_line_bind_error(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0"])
    port = listeners[0].port
    messages: list[str] = []
    with pytest.raises(BindError) as info:
        bind_listeners([f"127.0.0.1:{port}"], attempts=3, retry_delay=0, log=messages.append)
    assert str(info.value) == f"Can't connect to ('127.0.0.1', {port}): Address already in use"
    assert info.value.errno == errno.EADDRINUSE
    assert isinstance(info.value, OSError)
    # two retries, each logged as gunicorn does; no log line for the final failure
    assert messages == [f"Connection in use: ('127.0.0.1', {port})", "Retrying in 0 seconds."] * 2


def test_failure_closes_what_was_already_bound(tmp_path, listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0"])
    path = tmp_path / "first.sock"
    with pytest.raises(BindError):
        bind_listeners([f"unix:{path}", f"127.0.0.1:{listeners[0].port}"], attempts=1)
    assert not path.exists()


def test_unresolvable_host_fails_without_retry() -> None:
    messages: list[str] = []
    with pytest.raises(BindError) as info:
        bind_listeners(["no-such-host.invalid:0"], attempts=5, retry_delay=0, log=messages.append)
    assert str(info.value).startswith("Can't connect to ('no-such-host.invalid', 0): ")
    assert messages == []


def test_duplicate_fixed_address_is_bound_once(listeners: list[Listener]) -> None:
    (probe,) = bind_listeners(["127.0.0.1:0"])
    port = probe.port
    probe.close()
    listeners += bind_listeners([f"127.0.0.1:{port}", f"127.0.0.1:{port}"], attempts=1)
    assert len(listeners) == 1
    listeners += bind_listeners(["127.0.0.1:0", "127.0.0.1:0"])  # two ephemeral ports
    assert len(listeners) == 3 and listeners[1].port != listeners[2].port


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="cannot bind ::1")


@needs_ipv6
def test_bind_ipv6(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["[::1]:0"])
    lnr = listeners[0]
    assert lnr.family == socket.AF_INET6
    assert lnr.name == f"http://[::1]:{lnr.port}"
    with _connect(("::1", lnr.port), socket.AF_INET6):
        _accept(lnr).close()


@needs_ipv6
def test_same_port_on_ipv4_and_ipv6(listeners: list[Listener]) -> None:
    (probe,) = bind_listeners(["127.0.0.1:0"])
    port = probe.port
    probe.close()
    listeners += bind_listeners([f"127.0.0.1:{port}", f"[::1]:{port}"], attempts=1)
    assert [lnr.port for lnr in listeners] == [port, port]
    assert listeners[1].sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_v6only_ports_pure() -> None:
    addrs = [parse_address(b) for b in ["0.0.0.0:80", "[::]:80", "[::]:81", ":0", "[::]:0"]]
    assert sockets._v6only_ports(addrs) == {80}


# -- UNIX sockets ----------------------------------------------------------------------


def test_bind_unix_socket(tmp_path, listeners: list[Listener]) -> None:
    path = tmp_path / "app.sock"
    listeners += bind_listeners([f"unix:{path}"])
    lnr = listeners[0]
    assert lnr.name == f"unix:{path}"
    assert lnr.family == socket.AF_UNIX and lnr.port is None
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert lnr.sock.getblocking() is False and not os.get_inheritable(lnr.fileno())
    with _connect(str(path), socket.AF_UNIX):
        _accept(lnr).close()


@pytest.mark.parametrize(("umask", "mode"), [(0o007, 0o770), (0o077, 0o700), (0o022, 0o755)])
def test_unix_socket_mode_follows_umask(tmp_path, listeners, umask: int, mode: int) -> None:
    path = tmp_path / "m.sock"
    before = os.umask(0o022)
    os.umask(before)
    listeners += bind_listeners([f"unix:{path}"], umask=umask)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    now = os.umask(before)
    assert now == before  # the process umask is restored


def test_unix_mode_and_owner(tmp_path, listeners: list[Listener]) -> None:
    path = tmp_path / "o.sock"
    owner = (os.getuid(), os.getgid())
    listeners += bind_listeners([f"unix:{path}"], umask=0o077, unix_mode=0o666, owner=owner)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o666 and (st.st_uid, st.st_gid) == owner


def test_stale_unix_socket_is_replaced(tmp_path, listeners: list[Listener]) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    path.chmod(0o700)
    listeners += bind_listeners([f"unix:{path}"], umask=0o022, attempts=1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755  # a new file, not the old one
    with _connect(str(path), socket.AF_UNIX):
        _accept(listeners[0]).close()


def test_live_unix_socket_is_in_use(tmp_path) -> None:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen(1)
        inode = path.stat().st_ino
        messages: list[str] = []
        with pytest.raises(BindError) as info:
            bind_listeners([f"unix:{path}"], attempts=2, retry_delay=0, log=messages.append)
        assert str(info.value) == f"Can't connect to {path}: Address already in use"
        assert info.value.errno == errno.EADDRINUSE
        assert messages[0] == f"Connection in use: {path}"
        assert path.stat().st_ino == inode


def test_regular_file_at_socket_path_is_kept(tmp_path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    messages: list[str] = []
    with pytest.raises(BindError) as info:
        bind_listeners([f"unix:{path}"], attempts=3, retry_delay=0, log=messages.append)
    assert str(info.value) == f"Can't connect to {path}: exists and is not a socket"
    assert path.read_text() == "precious" and messages == []


def test_missing_directory_fails_at_once(tmp_path) -> None:
    path = tmp_path / "nodir" / "x.sock"
    with pytest.raises(BindError) as info:
        bind_listeners([f"unix:{path}"], attempts=3, retry_delay=5)
    assert str(info.value).startswith(f"Can't connect to {path}: ")


def test_close_unlinks_only_when_told(tmp_path) -> None:
    path = tmp_path / "u.sock"
    (first,) = bind_listeners([f"unix:{path}"])
    first.close(unlink=False)  # USR2: the new master still serves on this file
    assert path.exists() and first.fileno() == -1
    (second,) = bind_listeners([f"unix:{path}"])  # stale now: replaced
    second.close(unlink=True)
    assert not path.exists()
    second.close(unlink=True)  # twice is harmless


def test_close_keeps_a_socket_file_that_is_no_longer_ours(tmp_path) -> None:
    path = tmp_path / "r.sock"
    (lnr,) = bind_listeners([f"unix:{path}"])
    os.unlink(path)
    with socket.socket(socket.AF_UNIX) as other:
        other.bind(str(path))  # another server's socket at the same path
        lnr.close(unlink=True)
        assert path.exists()


def test_relative_unix_path_unlinked_after_chdir(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (lnr,) = bind_listeners(["unix:rel.sock"])
    assert lnr.name == "unix:rel.sock"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    lnr.close(unlink=True)
    assert not (tmp_path / "rel.sock").exists()


# -- fds -------------------------------------------------------------------------------


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def test_fd_address_adopts_open_socket(listeners: list[Listener]) -> None:
    with _listening_socket() as original:
        fd = os.dup(original.fileno())
        listeners += bind_listeners([f"fd://{fd}"])
        lnr = listeners[0]
        assert lnr.origin == "fd" and lnr.fileno() == fd
        assert lnr.name == f"http://127.0.0.1:{original.getsockname()[1]}"
        assert lnr.sock.getblocking() is False and not os.get_inheritable(fd)


def test_fd_unix_socket_file_is_not_ours_to_unlink(tmp_path) -> None:
    path = tmp_path / "passed.sock"
    with socket.socket(socket.AF_UNIX) as original:
        original.bind(str(path))
        original.listen(1)
        (lnr,) = bind_listeners([f"fd://{os.dup(original.fileno())}"])
        assert lnr.name == f"unix:{path}" and lnr.origin == "fd"
        lnr.close(unlink=True)
        assert path.exists()


def test_adopt_fd_rejects_non_sockets_and_leaves_them_open() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(BindError) as info:
            sockets.adopt_fd(read_end, 8)
        assert str(info.value).startswith(f"fd {read_end} is not an open socket")
        os.fstat(read_end)  # still open
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
        with pytest.raises(BindError, match="not a stream socket"):
            sockets.adopt_fd(dgram.fileno(), 8)
        assert dgram.fileno() >= 0


def test_adopt_closed_fd() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(BindError, match=f"fd {fd} is not an open socket"):
        sockets.adopt_fd(fd, 8)


@pytest.mark.parametrize("variable", ["GREENHORN_FD", "GUNICORN_FD"])
def test_inherited_from_reexec_env(variable: str, listeners: list[Listener], tmp_path) -> None:
    with _listening_socket() as tcp, socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "i.sock"))
        unix.listen(1)
        fds = [os.dup(tcp.fileno()), os.dup(unix.fileno())]
        environ = {variable: ",".join(map(str, fds)), "OTHER": "kept"}
        found = sockets.inherited_listeners(environ, pid=12345)
        assert found is not None
        listeners += found
        assert [lnr.fileno() for lnr in found] == fds
        assert [lnr.origin for lnr in found] == ["reexec", "reexec"]
        assert found[0].name == f"http://127.0.0.1:{tcp.getsockname()[1]}"
        assert found[1].name == f"unix:{tmp_path / 'i.sock'}"
        assert environ == {"OTHER": "kept"}
        found[1].close(unlink=True)  # a re-executed master owns the file it inherited
        assert not (tmp_path / "i.sock").exists()


def test_nothing_inherited() -> None:
    environ = {"LISTEN_FDS": "2", "LISTEN_PID": "1", "LISTEN_FDNAMES": "a:b"}
    assert sockets.inherited_listeners(environ, pid=2) is None
    assert environ == {}  # not for us, but cleared so children do not see them
    assert sockets.inherited_listeners({}) is None


def test_garbage_reexec_env_is_an_error() -> None:
    with pytest.raises(BindError, match="invalid GREENHORN_FD value"):
        sockets.inherited_listeners({"GREENHORN_FD": "3,x"})


def test_fds_env_and_make_inheritable(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0", "127.0.0.1:0"])
    fds = [lnr.fileno() for lnr in listeners]
    assert sockets.fds_env(listeners) == {"GREENHORN_FD": f"{fds[0]},{fds[1]}"}
    sockets.make_inheritable(listeners)
    assert all(os.get_inheritable(fd) for fd in fds)


# -- through real processes -------------------------------------------------------------

_CHILD_PRELUDE = textwrap.dedent(
    """
    import json, os, socket, sys
    from greenhorn.master import listeners as sockets

    def report(found, conn=None):
        info = {
            "names": [lnr.name for lnr in found],
            "origins": [lnr.origin for lnr in found],
            "fdnames": [lnr.fdname for lnr in found],
            "left": sorted(k for k in os.environ
                           if k.startswith(("LISTEN_", "GREENHORN_FD", "GUNICORN_FD"))),
        }
        line = (json.dumps(info) + "\\n").encode()
        if conn is None:
            sys.stdout.write(line.decode())
        else:
            conn.sendall(line)
    """
)


def test_greenhorn_fd_round_trip_through_subprocess(listeners: list[Listener]) -> None:
    listeners += bind_listeners(["127.0.0.1:0"])
    lnr = listeners[0]
    env = dict(os.environ, **sockets.fds_env(listeners))
    code = """
        found = sockets.inherited_listeners(os.environ)
        sock = found[0].sock
        sock.settimeout(10)
        conn, _ = sock.accept()
        report(found, conn)
        conn.close()
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_PRELUDE + textwrap.dedent(code)],
        env=env,
        pass_fds=[lnr.fileno()],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with _connect(("127.0.0.1", lnr.port)) as client:
            data = client.makefile().readline()
        assert child.wait(timeout=20) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            os.kill(child.pid, 9)
            child.wait(timeout=10)
        if child.stderr:
            child.stderr.close()
    info = json.loads(data)
    assert info == {"names": [lnr.name], "origins": ["reexec"], "fdnames": [None], "left": []}


def test_listen_fds_and_systemd_reexec_round_trip(tmp_path, listeners: list[Listener]) -> None:
    """A child puts the socket at fd 3 with LISTEN_PID=itself (what systemd does), reads
    it, then re-execs itself the USR2 way; the new image must still see systemd's socket."""
    listeners += bind_listeners(["127.0.0.1:0"])
    lnr = listeners[0]
    script = tmp_path / "child.py"
    code = f"""
        if sys.argv[1:] != ["again"]:
            if {lnr.fileno()} != 3:
                os.dup2({lnr.fileno()}, 3)
                os.close({lnr.fileno()})
            os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
            os.environ["GREENHORN_FD"] = "99"  # systemd wins; this is dropped too
        found = sockets.inherited_listeners(os.environ)
        report(found)
        sys.stdout.flush()
        if sys.argv[1:] != ["again"]:
            env = dict(os.environ, **sockets.fds_env(found))
            sockets.make_inheritable(found)
            os.execve(sys.executable, [sys.executable, __file__, "again"], env)
    """
    script.write_text(_CHILD_PRELUDE + textwrap.dedent(code))
    result = subprocess.run(
        [sys.executable, str(script)],
        pass_fds=[lnr.fileno()],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    expected = {"names": [lnr.name], "origins": ["systemd"], "fdnames": ["web"], "left": []}
    assert first == expected
    assert second == expected


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate missing"
)
def test_systemd_socket_activate(tmp_path) -> None:
    path = tmp_path / "activated.sock"
    code = """
        found = sockets.inherited_listeners(os.environ)
        sock = found[0].sock
        sock.settimeout(10)
        conn, _ = sock.accept()
        report(found, conn)
        conn.close()
    """
    activator = subprocess.Popen(
        [
            shutil.which("systemd-socket-activate") or "",
            "-l",
            str(path),
            "--fdname=web",
            sys.executable,
            "-c",
            _CHILD_PRELUDE + textwrap.dedent(code),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        client = None
        while client is None:  # the file appears at bind(), connections work after listen()
            assert activator.poll() is None, activator.stderr.read() if activator.stderr else ""
            assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
            with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
                client = _connect(str(path), socket.AF_UNIX)
            if client is None:
                time.sleep(0.02)
        with client:  # the connection starts the child
            data = client.makefile().readline()
        assert activator.wait(timeout=20) == 0
    finally:
        if activator.poll() is None:
            os.kill(activator.pid, 9)
            activator.wait(timeout=10)
        if activator.stderr:
            activator.stderr.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    info = json.loads(data)
    assert info == {
        "names": [f"unix:{path}"],
        "origins": ["systemd"],
        "fdnames": ["web"],
        "left": [],
    }
