"""Render docs/reference/settings.md from the settings table.

Why it exists: the reference page must never drift from the code, so nobody writes it: it
is generated from `SETTINGS` (help, flags, defaults, reload behaviour) and from the field
types of `Config`. A unit test renders it again and fails when the committed copy differs.

Usage:
    python -m greenhorn.config.docgen            # rewrite docs/reference/settings.md
    python -m greenhorn.config.docgen --check    # exit 1 if the committed page is stale
    python -m greenhorn.config.docgen -o PATH    # write somewhere else
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from greenhorn.config import Config, hooks
from greenhorn.config.layers import CMD_ARGS_VARS, DEFAULT_CONFIG_FILES, default_text
from greenhorn.config.setting import Setting
from greenhorn.config.settings import SECTIONS, SETTINGS

# src/greenhorn/config/docgen.py -> the repository root is three levels above the package.
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "reference" / "settings.md"

BANNER = (
    "<!-- Generated file, do not edit: change the section's module in "
    "src/greenhorn/config/settings/ and run `python -m greenhorn.config.docgen`. -->"
)


def _anchor(text: str) -> str:
    """The id mkdocs gives a heading: punctuation dropped (``HTTP/2`` is ``http2``), runs of
    spaces and hyphens one hyphen."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return "-".join(kept.replace("-", " ").split())


def _flags(setting: Setting) -> str:
    def one(flag: str) -> str:
        if setting.action in ("store_true", "store_const"):
            return f"`{flag}`"
        if setting.nargs == "?":
            return f"`{flag} [{setting.metavar}]`"
        return f"`{flag} {setting.metavar}`"

    return ", ".join(one(flag) for flag in setting.flags)


def _default(setting: Setting) -> str:
    if setting.is_hook:
        doc = (hooks.HOOK_DEFAULTS[setting.name].__doc__ or "").split("\n")[0]
        return doc.partition(": ")[2].rstrip(".").split(" (")[0] or "does nothing"
    if setting.default_doc is not None:
        return setting.default_doc
    return f"`{default_text(setting)}`"


def render_setting(setting: Setting) -> list[str]:
    """The Markdown block for one setting."""
    lines = [f"### `{setting.name}`", ""]
    if setting.is_hook:
        lines.append(f"- **Signature:** `{hooks.signature_of(setting.name)}`")
    else:
        if setting.flags:
            lines.append(f"- **Command line:** {_flags(setting)}")
        elif setting.name == "wsgi_app":
            lines.append("- **Command line:** the `APP_MODULE` argument")
        else:
            lines.append("- **Command line:** none (config file only)")
        lines.append(f"- **Type:** `{Config.__annotations__[setting.name]}`")
    lines.append(f"- **Default:** {_default(setting)}")
    reload = "yes" if setting.reloadable else "no, restart the server"
    lines.append(f"- **Changes on reload (SIGHUP):** {reload}")
    lines += ["", setting.help, ""]
    return lines


def render() -> str:
    """The whole settings reference page."""
    first, second = DEFAULT_CONFIG_FILES
    lines = [
        BANNER,
        "",
        "# Settings reference",
        "",
        "> Generated file, do not edit. It is rendered from the settings table in "
        "`src/greenhorn/config/settings/` by `python -m greenhorn.config.docgen`.",
        "",
        "Every setting has gunicorn's name, and where gunicorn has one, gunicorn's command-line "
        "flag. A setting can be given, from lowest to highest precedence:",
        "",
        "1. by its default (a few defaults come from the environment: `PORT`, "
        "`WEB_CONCURRENCY`, `FORWARDED_ALLOW_IPS`, `SENDFILE`);",
        f"2. in the config file: `-c FILE`, else `./{first}`, else `./{second}`. It is Python; "
        "each top-level name that is a setting name sets it, and other names get a warning;",
        f"3. in `{CMD_ARGS_VARS[0]}` (or `{CMD_ARGS_VARS[1]}` when that is unset), split like "
        "a shell command line;",
        "4. on the command line.",
        "",
        "`greenhorn --print-config` shows every effective value and where it came from.",
        "",
        "## Sections",
        "",
    ]
    lines += [f"- [{section}](#{_anchor(section)})" for section in SECTIONS]
    lines.append("")
    for section in SECTIONS:
        lines += [f"## {section}", ""]
        for setting in SETTINGS:
            if setting.section == section:
                lines += render_setting(setting)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the settings reference page."""
    parser = argparse.ArgumentParser(prog="python -m greenhorn.config.docgen")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    opts = parser.parse_args(argv)
    text = render()
    if opts.check:
        current = opts.output.read_text(encoding="utf-8") if opts.output.exists() else ""
        if current != text:
            sys.stderr.write(f"{opts.output} is stale: run python -m greenhorn.config.docgen\n")
            return 1
        return 0
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
