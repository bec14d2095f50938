"""A log on a full device (issue 19): the failure is reported once, with a count, and
writing is tried again later; requests are served all along.

``/dev/full`` fails every write. A small tmpfs, when this machine lets us mount one (root
with CAP_SYS_ADMIN), fills up and then gets room again, which shows the recovery.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import wait_until
from greenhorn.observe.log_failures import RETRY_SECONDS


def test_access_log_on_a_full_device_is_reported_once_with_a_count(greenhorn):
    # issue 19: every request wrote a multi-line traceback to the error log
    s = greenhorn("hello:app", "-w", "1", "--access-logfile", "/dev/full", ready_path=None)
    n = 30
    with requests.Session() as session:
        for _ in range(n):
            assert session.get(s.url("/"), timeout=10).status_code == 200
    assert s.stop() == 0
    log = s.log
    assert "Traceback" not in log, log[-3000:]
    assert log.count("Cannot write the access log /dev/full: [Errno 28]") == 1, log[-3000:]
    assert f"{n} line(s) could not be written to the access log /dev/full." in log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_error_log_on_a_full_device_is_reported_once_on_stderr(greenhorn):
    port = _free_port()
    s = greenhorn(
        "errors:app",
        "-w",
        "1",
        "-b",
        f"127.0.0.1:{port}",
        "--error-logfile",
        "/dev/full",
        wait=False,
    )
    s.port = port

    def served() -> bool:
        try:
            return requests.get(s.url("/raise"), timeout=2).status_code == 500
        except requests.RequestException:
            return False

    wait_until(served, 20, 0.1, "the server answering while its error log fails")
    for _ in range(10):  # each one logs a traceback: into the full device, not onto stderr
        assert requests.get(s.url("/raise"), timeout=10).status_code == 500
    assert s.stop() == 0
    log = s.log  # the fixture's stderr
    assert "Traceback" not in log and "Logging error" not in log, log[-3000:]
    assert log.count("greenhorn: Cannot write the error log /dev/full: [Errno 28]") == 1, log


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs, or a skip where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        timeout=10,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_a_full_disk_is_reported_once_and_writing_resumes_when_room_returns(
    greenhorn, tmp_path, small_tmpfs
):
    access = small_tmpfs / "access.log"
    errors = tmp_path / "error.log"
    s = greenhorn(
        "hello:app",
        "-w",
        "1",
        "--access-logfile",
        str(access),
        "--error-logfile",
        str(errors),
        wait=False,
    )
    found = wait_until(
        lambda: errors.exists() and "Listening at: http://127.0.0.1:" in errors.read_text(), 15
    )
    assert found
    s.port = int(errors.read_text().split("Listening at: http://127.0.0.1:")[1].split()[0])
    filler = small_tmpfs / "filler"
    with requests.Session() as session:
        wait_until(lambda: session.get(s.url("/"), timeout=5).status_code == 200, 15)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the device
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        for _ in range(100):
            assert session.get(s.url("/"), timeout=10).status_code == 200
        filler.unlink()  # room again
        time.sleep(RETRY_SECONDS + 0.2)
        for _ in range(5):
            assert session.get(s.url("/tail"), timeout=10).status_code == 200
    text = wait_until(lambda: "works again" in errors.read_text() and errors.read_text(), 10)
    assert text.count("Cannot write the access log") == 1 and "Traceback" not in text
    assert "access log" in text and "line(s) were lost" in text
    # written again (each line after its response has gone out: wait for the last one)
    wait_until(lambda: access.read_text().count('"GET /tail HTTP/1.1"') == 5, 10)
    assert s.stop(signal.SIGTERM) == 0
