"""``mypy --strict`` is clean on the sans-IO ``http/`` package (issue 22) and on the ASGI
code (``asgi/`` and ``workers/asgi/``, issue 23).

Why in the suite: http/ is the seam every worker type, the corpus tools and the fuzzers go
through, and types that are only checked by hand drift (16 errors had piled up); the ASGI
code was written strict-clean and is kept so. One mypy run checks them all (modules they
import are read but not reported: ``--follow-imports=silent``). mypy runs
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
STRICT = (
    HTTP,
    ROOT / "src" / "greenhorn" / "asgi",
    ROOT / "src" / "greenhorn" / "workers" / "asgi",
)


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not importable (pip install mypy)"
)
def test_http_and_asgi_code_is_mypy_strict_clean(tmp_path: Path) -> None:
    files = sorted(f for root in STRICT for f in root.rglob("*.py"))  # subpackages too
    argv = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11"]
    argv += ["--follow-imports=silent", "--cache-dir", str(tmp_path / "mypy-cache")]
    argv += [str(root) for root in STRICT]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mypy --strict on {[str(r) for r in STRICT]}:\n{report}"
    checked = re.search(r"Success: no issues found in (\d+) source files?", report)
    assert checked is not None, report
    assert int(checked.group(1)) == len(files), (report, [f.name for f in files])
