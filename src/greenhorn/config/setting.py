"""One row of the settings table (`Setting`) and the error every bad value becomes.

Why a module of its own: the section modules under `settings/` are data, one `Setting` per
setting; this is the shape of that data. Converters (what a row's `convert` points at) are
in `converters.py`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from greenhorn.config import hooks

__all__ = ["Action", "ConfigError", "Converter", "Setting", "Warned"]

Converter = Callable[[object], Any]
Action = Literal["store", "store_true", "store_const", "append"]


class ConfigError(Exception):
    """A setting has a bad value; `str()` is one line naming the setting."""


@dataclasses.dataclass(frozen=True, slots=True)
class Warned:
    """What a converter returns for a value gunicorn accepts but greenhorn reads differently
    (or not at all): the value to use, and the one line that says so. The merge keeps the
    value and turns the message into a warning naming the setting, so greenhorn still starts
    and says why. A converter never returns it for the setting's default."""

    value: object
    message: str


def first_sentence(text: str) -> str:
    """``text`` up to the first full stop that ends a sentence: followed by a space or the
    end, outside `code` and (parentheses), and not part of an ellipsis (``listen ...``) or
    of "e.g." and "i.e."."""
    depth = 0
    code = False
    for i, char in enumerate(text):
        if char == "`":
            code = not code
        elif code:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == "." and not depth and text[i + 1 : i + 2] in ("", " "):
            ellipsis = text[i - 1 : i] == "."
            if not ellipsis and not text[: i + 1].endswith(("e.g.", "i.e.")):
                return text[: i + 1]
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table: everything the CLI, config file, env args,
    --print-config and the docs page need to know about one setting."""

    name: str  # gunicorn's name: config-file key and Config field
    section: str  # groups `-h` and the docs page
    convert: Converter
    default: object
    help: str  # one paragraph; its first sentence is the `-h` line
    flags: tuple[str, ...] = ()  # command-line flags; () = config file only
    metavar: str | None = None
    action: Action = "store"
    nargs: str | None = None
    const: object = None
    reloadable: bool = True  # may change on SIGHUP without a restart
    default_factory: Callable[[], object] | None = None  # computed when Config() is built
    default_doc: str | None = None  # how the docs show a computed default
    # how `-h` shows the default when it is not simply typed after the flag (one that comes
    # from the environment, or a name that reads better than the number it stands for)
    help_default: str | None = None
    # the `-h` line of a flag that does the opposite of the setting's name (--no-sendfile)
    flag_help: str | None = None

    def make_default(self) -> object:
        """A fresh default value (mutable defaults are copied, factories called)."""
        if self.default_factory is not None:
            return self.default_factory()
        return copy.deepcopy(self.default)

    def field(self) -> object:
        """The `dataclasses.field` for this setting's `Config` attribute."""
        if self.default_factory is not None or isinstance(self.default, list | dict):
            return dataclasses.field(default_factory=self.make_default)
        return dataclasses.field(default=self.default)

    @property
    def short(self) -> str:
        """The help paragraph's first sentence (the `-h` line)."""
        return first_sentence(self.help)

    @property
    def is_hook(self) -> bool:
        """True for server hooks (callables set in a config file)."""
        return self.name in hooks.HOOK_DEFAULTS
