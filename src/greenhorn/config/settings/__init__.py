"""THE settings table: one `Setting` row per setting, one module per section.

Why it exists: every setting is declared exactly once, as data. The argparse CLI, the
config-file keys, GREENHORN_CMD_ARGS, validation, `--print-config` and
docs/reference/settings.md are all generated from `SETTINGS`. The only other place a setting
name appears is its typed field on `greenhorn.config.Config` (so type checkers see
`cfg.workers` as an int); a unit test keeps the two in step.

Names, flags, metavars and defaults are gunicorn's, so gunicorn command lines and config
files work unchanged. The help texts are our own.

To add a setting: add its row to the module of its section below, and its typed field to
`greenhorn.config.Config`, then run `python -m greenhorn.config.docgen`.
"""

from __future__ import annotations

from greenhorn.config.setting import Setting
from greenhorn.config.settings import (
    config_file,
    control,
    debugging,
    http2,
    logs,
    process_naming,
    security,
    server_hooks,
    server_mechanics,
    server_socket,
    tls,
    worker_processes,
)

__all__ = ["BY_NAME", "SECTIONS", "SETTINGS"]

# The sections in the order of `-h` and of the docs page.
_SECTIONS = (
    config_file,
    server_socket,
    worker_processes,
    security,
    debugging,
    server_mechanics,
    logs,
    process_naming,
    tls,
    http2,
    control,
    server_hooks,
)

SETTINGS: tuple[Setting, ...] = tuple(row for section in _SECTIONS for row in section.ROWS)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(section.SECTION for section in _SECTIONS)
