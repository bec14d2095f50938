"""heap.release(): malloc_trim through _ctypes, without loading the ctypes package."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_calls_malloc_trim_without_the_ctypes_package():
    code = (
        "import sys\n"
        "from greenhorn.workers import heap\n"
        "blocks = [bytes(200_000) for _ in range(50)]\n"  # heap memory, then freed
        "del blocks\n"
        "print(heap.release(), heap.release(), 'ctypes' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]
