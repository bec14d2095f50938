"""greenhorn's settings against gunicorn 27.0.1's own settings table (issue 21).

gunicorn (a dev dependency) is imported and its ``KNOWN_SETTINGS`` read. Each of its
settings must be one of:

- **the same** in greenhorn: same name, every gunicorn flag with the same action, the same
  default (gunicorn's default, run through greenhorn's converter, gives greenhorn's
  default), and every value in ``GUNICORN_VALUES`` (values gunicorn runs with) accepted;
- **listed** in docs/migrating.md's table of settings that differ on purpose;
- **pending**: listed in the table of settings not built yet, and absent from greenhorn.

A new gunicorn setting, a setting whose flag or default drifted, or a listed one that
got built fails here; so do counts in the page that no longer add up.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import gunicorn
import gunicorn.config
import pytest

from greenhorn.config.setting import Setting, Warned
from greenhorn.config.settings import BY_NAME

MIGRATING = Path(__file__).resolve().parents[2] / "docs" / "migrating.md"
SECTION = "## Every gunicorn setting"
DIFFERENT = "### Settings that differ on purpose"
PENDING = "### Settings not built yet"

# Values each gunicorn setting is run with in real deployments, beyond its default (those
# the issue names, and gunicorn's other spellings): greenhorn must load every one of them,
# at most with a warning. None stands for `setting = None` in a config file.
GUNICORN_VALUES: dict[str, list[object]] = {
    "workers": [0, "0", "0x4"],
    "threads": [0, "0"],
    "backlog": [0, "0"],
    "worker_connections": [0],
    "timeout": ["0x1e", "0o17"],
    "limit_request_fields": [0, 40000, "40000"],
    "limit_request_field_size": [0],
    "limit_request_line": [0, 10000],
    "loglevel": ["warn", "WARN", "Debug", "verbose", None],
    "user": [None],
    "group": [None],
    "sendfile": [None, True, False],
    "errorlog": [None],
    "umask": [0, "0o22", "0x12", "18"],
    "worker_class": ["sync", "gthread", "egg:gunicorn#sync", "gunicorn.workers.sync.SyncWorker",
                     "greenhorn.workers.sync:SyncWorker"],
    "logger_class": ["gunicorn.glogging.Logger", "simple"],
    "ssl_version": ["TLS", "TLSv1_2", 2, 5],
    "http_parser": ["auto", "fast", "python", None],
    "proxy_protocol": [True, False, None, "true", "v2"],
    "forwarded_allow_ips": ["*", "10.0.0.0/8,127.0.0.1"],
    "pythonpath": [None, "a,b"],
    "raw_env": ["A=1", ["A=1", "B=2"]],
    "bind": ["127.0.0.1:9000", ["unix:/tmp/x.sock", "0.0.0.0:80"], None],
    "reload_extra_files": [[]],
    "pidfile": [None],
    "proc_name": [None],
    "tmp_upload_dir": [None],
    "cert_reqs": [0, 2],
    "control_socket_mode": [0o600, "0o660", 384],
    "raw_paste_global_conf": [["FOO=1"], "a\\=b=c"],
}  # fmt: skip


def _names(cell: str) -> list[str]:
    return re.findall(r"`([a-z0-9_]+)`", cell)


def _table(text: str, heading: str) -> list[str]:
    """The setting names in the first column of the table under ``heading``."""
    part = text.split(heading, 1)[1].split("\n#", 1)[0]
    names: list[str] = []
    for line in part.splitlines():
        if line.startswith("| `"):
            names += _names(line.split("|")[1])
    return names


def documented() -> tuple[str, list[str], list[str]]:
    text = MIGRATING.read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1]
    return section, _table(section, DIFFERENT), _table(section, PENDING)


def _converted(setting: Setting, raw: object) -> object:
    """What greenhorn makes of ``raw``: None in a config file leaves the default."""
    try:
        value = setting.convert(raw)
    except (TypeError, ValueError):
        if raw is None:
            return setting.make_default()
        raise
    return value.value if isinstance(value, Warned) else value


def _gunicorn_default(theirs: gunicorn.config.Setting) -> object:
    default = theirs.default
    try:
        return theirs.validator(default)
    except Exception:  # gunicorn validates some defaults only when set
        return default


def differences(theirs: gunicorn.config.Setting) -> list[str]:
    """How greenhorn differs from gunicorn on one setting, as far as data can tell."""
    ours = BY_NAME.get(theirs.name)
    if ours is None:
        return ["not a greenhorn setting"]
    found = []
    cli = list(theirs.cli or ())
    if not set(cli) <= set(ours.flags):
        found.append(f"flags {cli} vs {list(ours.flags)}")
    if cli and (theirs.action or "store") != ours.action:
        found.append(f"action {theirs.action} vs {ours.action}")
    if cli and theirs.nargs != ours.nargs:
        found.append(f"nargs {theirs.nargs} vs {ours.nargs}")
    if ours.is_hook:
        if theirs.validator is None or not callable(theirs.default):
            found.append("a hook in greenhorn only")
        return found
    default = _gunicorn_default(theirs)
    if theirs.name == "chdir":  # both mean the start directory: gunicorn computes it
        default = None
    try:
        mine = _converted(ours, default)
    except (TypeError, ValueError) as exc:
        found.append(f"gunicorn's default {default!r} refused: {exc}")
    else:
        if mine != ours.make_default():
            found.append(f"default {default!r} (greenhorn: {ours.make_default()!r})")
    for raw in GUNICORN_VALUES.get(theirs.name, ()):
        try:
            _converted(ours, raw)
        except (TypeError, ValueError) as exc:
            found.append(f"refuses {raw!r}: {exc}")
    return found


def test_gunicorn_is_the_reference_version():
    assert gunicorn.__version__ == "27.0.1"


def test_every_gunicorn_setting_is_the_same_listed_or_pending():
    _, different, pending = documented()
    unexplained = {}
    for theirs in gunicorn.config.KNOWN_SETTINGS:
        if theirs.name in pending:
            continue
        found = differences(theirs)
        if found and theirs.name not in different:
            unexplained[theirs.name] = found
    assert not unexplained, (
        "gunicorn settings that greenhorn neither matches nor lists in docs/migrating.md "
        f"('{SECTION}'): {unexplained}"
    )


def test_the_lists_name_real_settings_once():
    _, different, pending = documented()
    gunicorns = {s.name for s in gunicorn.config.KNOWN_SETTINGS}
    assert len(set(different)) == len(different) and len(set(pending)) == len(pending)
    assert not set(different) & set(pending)
    assert set(different) <= gunicorns, set(different) - gunicorns
    assert set(pending) <= gunicorns, set(pending) - gunicorns
    assert set(different) <= set(BY_NAME), "listed as different but missing: move to pending"
    built = set(pending) & set(BY_NAME)
    assert not built, f"{built} are built now: take them out of '{PENDING}'"


def test_values_gunicorn_accepts_load_here():
    """GUNICORN_VALUES only holds values gunicorn itself accepts (so the list stays honest),
    and greenhorn loads each (the table test above says where it means something else)."""
    by_name = {s.name: s for s in gunicorn.config.KNOWN_SETTINGS}
    for name, values in GUNICORN_VALUES.items():
        for raw in values:
            validator = by_name[name].validator
            if not (inspect.isfunction(raw) or name in ("worker_class", "logger_class")):
                validator(raw)  # raises if gunicorn refuses it
            _converted(BY_NAME[name], raw)


def test_the_counts_on_the_page_add_up():
    section, different, pending = documented()
    total = len(gunicorn.config.KNOWN_SETTINGS)
    same = total - len(different) - len(pending)
    counts = [int(n) for n in re.findall(r"\*\*(\d+)\*\*", section.split("\n\n", 2)[2])[:4]]
    assert counts == [total, same, len(different), len(pending)], (
        f"docs/migrating.md should say {total} settings: {same} the same, "
        f"{len(different)} different, {len(pending)} pending"
    )


@pytest.mark.parametrize("name", ["workers", "threads", "limit_request_fields", "loglevel"])
def test_a_value_read_differently_carries_its_warning(name):
    """The values the issue names do not fail: those greenhorn reads differently than their
    words say come back with the line the user sees."""
    odd = {"workers": 0, "threads": 0, "limit_request_fields": 40000, "loglevel": "verbose"}
    value = BY_NAME[name].convert(odd[name])
    assert isinstance(value, Warned) and value.message
