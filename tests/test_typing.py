"""``mypy --strict`` is clean on the sans-IO ``http/`` package (issue 22).

Why in the suite: http/ is the seam every worker type, the corpus tools and the fuzzers go
through, and types that are only checked by hand drift (16 errors had piled up). mypy runs
in a subprocess of this interpreter, against the Python floor (3.11), with a cache of its
own under ``tmp_path`` (so runs never share or race on a ``.mypy_cache``). Any error fails
the test, and so does a run that checked fewer files than http/ holds. The test skips only
when mypy is not importable (it is in the ``dev`` extra).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTTP = ROOT / "src" / "greenhorn" / "http"


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not importable (pip install mypy)"
)
def test_http_package_is_mypy_strict_clean(tmp_path: Path) -> None:
    files = sorted(HTTP.rglob("*.py"))  # subpackages too (http/websocket/)
    argv = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11"]
    argv += ["--cache-dir", str(tmp_path / "mypy-cache"), str(HTTP)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mypy --strict on src/greenhorn/http:\n{report}"
    checked = re.search(r"Success: no issues found in (\d+) source files?", report)
    assert checked is not None, report
    assert int(checked.group(1)) == len(files), (report, [f.name for f in files])
