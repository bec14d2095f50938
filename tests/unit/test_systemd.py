"""greenhorn.master.systemd: LISTEN_FDS parsing and sd_notify datagrams on real AF_UNIX sockets."""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from types import MappingProxyType

import pytest

from greenhorn.master import systemd

# -- socket activation -----------------------------------------------------------------


def test_listen_fds_for_us_unsets_the_variables() -> None:
    env = {"LISTEN_FDS": "2", "LISTEN_PID": "42", "LISTEN_FDNAMES": "a:b", "PATH": "/bin"}
    assert systemd.listen_fdnames(env) == ["a", "b"]
    assert systemd.listen_fds(env, pid=42) == 2
    assert env == {"PATH": "/bin"}


def test_listen_fds_defaults_to_our_pid() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    assert systemd.listen_fds(env, unset_environment=False) == 1
    assert env == {"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}


def test_listen_fds_for_another_pid_is_zero_and_still_unset() -> None:
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "42", "LISTEN_FDNAMES": "web"}
    assert systemd.listen_fds(env, pid=43) == 0
    assert env == {}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LISTEN_FDS": "1"},
        {"LISTEN_PID": "42"},
        {"LISTEN_FDS": "x", "LISTEN_PID": "42"},
        {"LISTEN_FDS": "-1", "LISTEN_PID": "42"},
        {"LISTEN_FDS": "0", "LISTEN_PID": "42"},
        {"LISTEN_FDS": "1", "LISTEN_PID": "abc"},
    ],
)
def test_listen_fds_malformed_is_zero(env: dict[str, str]) -> None:
    assert systemd.listen_fds(env, pid=42) == 0


def test_listen_fds_on_a_read_only_mapping() -> None:
    env = MappingProxyType({"LISTEN_FDS": "3", "LISTEN_PID": "7"})
    assert systemd.listen_fds(env, pid=7) == 3
    assert dict(env) == {"LISTEN_FDS": "3", "LISTEN_PID": "7"}


def test_listen_fdnames() -> None:
    assert systemd.listen_fdnames({}) == []
    assert systemd.listen_fdnames({"LISTEN_FDNAMES": "http:https"}) == ["http", "https"]
    assert systemd.SD_LISTEN_FDS_START == 3


# -- sd_notify -------------------------------------------------------------------------


@pytest.fixture
def notify_path(tmp_path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield path, sock


@pytest.fixture
def notify_abstract() -> Iterator[tuple[str, socket.socket]]:
    name = f"greenhorn-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield "@" + name, sock


def test_sd_notify_to_a_path(notify_path) -> None:
    path, sock = notify_path
    assert systemd.sd_notify("READY=1", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1"


def test_sd_notify_to_an_abstract_socket(notify_abstract) -> None:
    name, sock = notify_abstract
    assert systemd.sd_notify("STATUS=hello", {"NOTIFY_SOCKET": name}) is True
    assert sock.recv(4096) == b"STATUS=hello"


def test_sd_notify_reads_os_environ_by_default(notify_path, monkeypatch) -> None:
    path, sock = notify_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert systemd.stopping() is True
    assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_without_socket_is_a_quiet_no(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.sd_notify("READY=1") is False
    assert systemd.sd_notify("READY=1", {}) is False
    assert systemd.sd_notify("READY=1", {"NOTIFY_SOCKET": ""}) is False
    assert systemd.sd_notify("READY=1", {"NOTIFY_SOCKET": "relative"}) is False
    assert systemd.sd_notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1"}) is False
    missing = str(tmp_path / "nobody-here")
    assert systemd.sd_notify("READY=1", {"NOTIFY_SOCKET": missing}) is False
    regular = tmp_path / "file"
    regular.write_text("")
    assert systemd.sd_notify("READY=1", {"NOTIFY_SOCKET": str(regular)}) is False


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda env: systemd.ready(environ=env), b"READY=1"),
        (lambda env: systemd.ready("greenhorn booted", env), b"READY=1\nSTATUS=greenhorn booted"),
        (lambda env: systemd.stopping(env), b"STOPPING=1"),
        (lambda env: systemd.ready("two\nlines", env), b"READY=1\nSTATUS=two lines"),
    ],
)
def test_helpers_send_exact_datagrams(notify_path, send, expected: bytes) -> None:
    path, sock = notify_path
    assert send({"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == expected


def test_reloading_carries_monotonic_usec(notify_abstract) -> None:
    name, sock = notify_abstract
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading({"NOTIFY_SOCKET": name}) is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    match = re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=(\d+)", sock.recv(4096))
    assert match is not None
    assert before <= int(match.group(1)) <= after
