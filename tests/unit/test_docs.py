"""The documentation builds, and what it tells people to type is real.

- ``mkdocs build --strict`` fails on any warning: a broken link or anchor, a page missing
  from the nav, a nav entry without a page.
- The set-up page repeats the README's two set-up commands exactly (CI runs the README's).
- Every ``greenhorn ...`` command line in the docs and the README uses only options that
  greenhorn's parser knows, so a renamed or invented flag fails here, not for a reader.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from greenhorn import ctl
from greenhorn.config.layers import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").is_file()
    assert (site / "reference" / "settings" / "index.html").is_file()


def _setup_commands(markdown: str) -> list[str]:
    """The ``sh`` code blocks of a page, stripped."""
    return [body.strip() for lang, body in FENCE.findall(markdown) if lang == "sh"]


def test_setup_page_repeats_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = _setup_commands(section)
    assert len(commands) == 2, commands
    page = _setup_commands((DOCS / "setup.md").read_text())
    for command in commands:
        assert command in page, f"docs/setup.md lacks {command!r}"


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _greenhorn_command_lines(text: str) -> list[str]:
    """Lines of shell code blocks that run greenhorn, continuation lines joined."""
    lines: list[str] = []
    for lang, body in FENCE.findall(text):
        if lang not in ("sh", "bash", "console", ""):
            continue
        body = body.replace("\\\n", " ")
        for line in body.splitlines():
            for part in re.split(r"&&|\|\||;", line):
                part = part.strip().removeprefix("$ ")
                if part.startswith("greenhorn "):
                    lines.append(part)
            for cmd_args in re.findall(r'GREENHORN_CMD_ARGS="([^"]*)"', line):
                lines.append(f"greenhorn {cmd_args}")
    return lines


def _pages() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_greenhorn_commands_use_real_options(page):
    server_options = _options(build_parser())
    ctl_options = _options(ctl._parser())
    for line in _greenhorn_command_lines(page.read_text()):
        words = shlex.split(line, comments=True)
        known = ctl_options if words[1:2] == ["ctl"] else server_options
        for word in words[1:]:
            if word in ("|", "&"):
                break
            if word.startswith("-") and word != "-":
                option = word.split("=", 1)[0]
                assert option in known, f"{page.name}: unknown option {option!r} in {line!r}"


def test_every_page_is_reachable_from_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).as_posix()
        assert f": {rel}" in nav, f"{rel} is not in the mkdocs.yml nav"
