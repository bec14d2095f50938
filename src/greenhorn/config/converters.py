"""The converters that check and normalise setting values.

Why a module of its own: the table (`settings/`) should read as data, one row per setting.
Everything a row refers to by name lives here: the converters (bool, bounded int, address
lists, octal masks, users and groups, hooks ...).

Rules for converters:
- A converter takes a raw value (a string from the command line or GREENHORN_CMD_ARGS, or
  any Python value from a config file) and returns the typed value, or raises `ValueError`
  / `TypeError` whose message says what was expected. It never names the setting: the
  caller (layers.merge) knows whether to say `argument -w/--workers` or `workers` in
  `greenhorn.conf.py`, and prefixes the message.
- Converters are idempotent: converting a converted value gives it back. A unit test runs
  every converter on its own default.
- No converter reads environment variables. Those few that must look at the system (users,
  groups, a chdir target, reload files, hook imports) do so only when called.
"""

from __future__ import annotations

import grp
import inspect
import ipaddress
import pwd
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from greenhorn.config import hooks
from greenhorn.config.addresses import parse_address
from greenhorn.config.importer import ImportFailed, import_object, parse_app
from greenhorn.config.setting import Converter, Warned

# --- scalars ------------------------------------------------------------------------------

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def to_bool(value: object) -> bool:
    """`True`/`False`, or a string true/false/yes/no/on/off/1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError("expected true or false")


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        try:  # gunicorn reads numbers with int(text, 0): 0x10, 0o17, 0b101, 1_000
            return int(text, 0)
        except ValueError:
            pass
    raise ValueError("expected an integer")


def _bounds(lo: float | None, hi: float | None, kind: str) -> str:
    if lo is not None and hi is not None:
        return f"expected {kind} from {_number(lo)} to {_number(hi)}"
    if lo is not None:
        return f"expected {kind} >= {_number(lo)}"
    return f"expected {kind}"


def _number(x: float) -> str:
    """A bound as a user types it: every digit of an integer (16777215, not 1.67772e+07)."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def int_range(lo: int | None = 0, hi: int | None = None) -> Converter:
    """Converter for an integer within [lo, hi] (either bound may be None)."""

    def convert(value: object) -> int:
        try:
            number = _parse_int(value)
        except (TypeError, ValueError):
            raise ValueError(_bounds(lo, hi, "an integer"))
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ValueError(_bounds(lo, hi, "an integer"))
        return number

    return convert


def at_least(lo: int, instead: int, why: str) -> Converter:
    """Converter for an integer >= ``lo``. A smaller one that is still >= 0 (gunicorn
    accepts any integer >= 0) runs as ``instead``, with the warning ``why``."""
    strict = int_range(lo)

    def convert(value: object) -> int | Warned:
        try:
            number: int = int_range(0)(value)
        except ValueError:
            return int(strict(value))  # raises with the strict bounds in the message
        if number >= lo:
            return number
        return Warned(instead, why)

    return convert


def at_most(hi: int, why: str) -> Converter:
    """Converter for an integer >= 0; above ``hi`` it runs as ``hi`` (gunicorn's ceiling),
    with the warning ``why``."""
    base = int_range(0)

    def convert(value: object) -> int | Warned:
        number: int = base(value)
        return number if number <= hi else Warned(hi, why)

    return convert


def optional(convert: Converter) -> Converter:
    """Wrap `convert` so that None (or "none"/"" from the command line) gives None."""

    def wrapped(value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return convert(value)

    return wrapped


def float_min(lo: float = 0.0) -> Converter:
    """Converter for a number >= lo, returned as float."""

    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(_bounds(lo, None, "a number"))
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(_bounds(lo, None, "a number"))
        if not number >= lo or number == float("inf"):  # also rejects nan
            raise ValueError(_bounds(lo, None, "a number"))
        return number

    return convert


def to_str(value: object) -> str:
    """A string, stripped of surrounding whitespace."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value.strip()


to_opt_str = optional(to_str)


def choice(*choices: str) -> Converter:
    """Converter for one of `choices` (case-insensitive, returned lower-case)."""

    def convert(value: object) -> str:
        text = to_str(value).lower()
        if text not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text

    return convert


def to_octal(value: object) -> int:
    """A file mode mask, as gunicorn reads it: int, or a string `"0o22"`, `"022"` (leading
    zero = octal), `"0x12"` or `"18"`; 0 to 0o777."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"0[0-7]+", text):
            text = "0o" + text[1:]
        try:
            number = int(text, 0)
        except ValueError:
            number = None
    if number is None or not 0 <= number <= 0o777:
        raise ValueError("expected a mode from 0 to 0o777 (e.g. 0o22, 022, 18)")
    return number


# --- lists and dicts ----------------------------------------------------------------------


def _items(value: object, split_commas: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        raw: Iterable[Any] = value.split(",") if split_commas else [value]
    elif isinstance(value, list | tuple):
        raw = value
    else:
        raise TypeError(f"expected a string or a list of strings, not {type(value).__name__}")
    return [item for item in (to_str(v) for v in raw) if item]


def str_list(value: object) -> list[str]:
    """A list of strings; a single string becomes a one-item list (gunicorn's legacy form)."""
    return _items(value, split_commas=False)


def comma_list(value: object) -> list[str]:
    """A comma-separated string (or a list) of strings."""
    return _items(value, split_commas=True)


def upper_comma_list(value: object) -> list[str]:
    """Like comma_list, upper-cased (header and environ names)."""
    return [item.upper() for item in comma_list(value)]


def addr_list(value: object) -> list[str]:
    """Comma-separated IP addresses / CIDR networks, or `*` for any."""
    items = comma_list(value)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network ({exc})")
    return items


def check_address(addr: str) -> str:
    """Validate one listening address with THE grammar (``config/addresses.py``, which the
    master binds with too); returns it unchanged."""
    parse_address(addr)
    return addr


def bind_list(value: object) -> list[str]:
    """A list of bind addresses (see check_address)."""
    items = str_list(value)
    if not items:
        raise ValueError("expected at least one address")
    return [check_address(item) for item in items]


def host_port(value: object) -> str:
    """`HOST:PORT` or `:PORT` (a TCP address for a side listener such as metrics)."""
    text = to_str(value)
    if ":" not in text or parse_address(text).kind != "tcp":
        raise ValueError("expected HOST:PORT")
    return text


def env_list(value: object) -> list[str]:
    """`KEY=VALUE` strings (a single string is one item)."""
    items = str_list(value)
    for item in items:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{item!r} is not of the form KEY=VALUE")
    return items


_UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")


def split_paste_global(item: str) -> tuple[str, str]:
    """``KEY=VALUE`` at the first ``=`` not written ``\\=`` (gunicorn's reading of
    --paste-global); ``\\=`` in either part is a literal ``=``."""
    parts = _UNESCAPED_EQUALS.split(item, maxsplit=1)
    if len(parts) != 2 or not parts[0]:
        raise ValueError(f"{item!r} is not of the form KEY=VALUE")
    key, value = parts
    return key.replace("\\=", "="), value.replace("\\=", "=")


def paste_uri(value: object) -> str | None:
    """A PasteDeploy config file, ``PATH`` or ``PATH#app_name``, made absolute against the
    current directory, as gunicorn reads --paste (before --chdir applies)."""
    if value is None:
        return None
    text = to_str(value)
    path, hash_, name = text.partition("#")
    if not path:
        raise ValueError("expected a PasteDeploy config file, such as app.ini or app.ini#main")
    return str(Path(path).expanduser().absolute()) + hash_ + name


def paste_globals(value: object) -> list[str]:
    """``KEY=VALUE`` strings for PasteDeploy's global_conf (a single string is one item)."""
    items = str_list(value)
    for item in items:
        split_paste_global(item)
    return items


def header_dict(value: object) -> dict[str, str]:
    """A dict of header name -> exact value; names are upper-cased (as they are matched)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict, not {type(value).__name__}")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise TypeError("expected a dict of strings to strings")
        out[key.strip().upper()] = val
    return out


def any_dict(value: object) -> dict[str, Any]:
    """A dict (logging.config.dictConfig input)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a dict, not {type(value).__name__}")
    return value


# --- things named by strings --------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


# `module:attr` as well as `module.attr` (gunicorn reads both for worker and logger classes)
_COLON = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
)


def _class_path(value: object) -> str:
    """A class object becomes its import path, which must lead back to it: workers and a
    re-read configuration import it by name. A class defined in the config file qualifies:
    the file runs as the module ``__config__`` (``layers.CONFIG_MODULE_NAME``), registered
    in ``sys.modules`` as gunicorn does; a class made inside a function does not. A function
    returning the class (gunicorn's other form) is called."""
    if inspect.isfunction(value) or inspect.ismethod(value):
        value = value()
    if isinstance(value, type):
        path = f"{value.__module__}.{value.__qualname__}"
        module = sys.modules.get(value.__module__)
        found: object = module
        for part in value.__qualname__.split("."):
            found = getattr(found, part, None)
        if "<locals>" in path or found is not value:
            raise ValueError(f"class {value.__qualname__} is not importable by name")
        return path
    return to_str(value)


def worker_class(value: object) -> str:
    """A worker type's name (lower-cased; gunicorn's `egg:gunicorn#NAME` and `#NAME` too) or
    the dotted path of a worker class. Only the spelling is checked here: which names exist
    is the worker registry's to say (``workers/registry.py``), and ``cli.py`` asks it."""
    text = _class_path(value)
    if text.startswith("egg:"):
        text = text.rpartition("#")[2] if "#" in text else "sync"
    text = text.lstrip("#")
    if _NAME.fullmatch(text):
        return text.lower()
    if _DOTTED.fullmatch(text) or _COLON.fullmatch(text):
        return text
    raise ValueError("expected a worker type such as sync or gthread, or a dotted class path")


DEFAULT_LOGGER = "greenhorn.observe.logger.Logger"


def logger_class(value: object) -> str:
    """A dotted class path; gunicorn's `simple` and `gunicorn.glogging.Logger` mean ours."""
    text = _class_path(value)
    if text in ("simple", "gunicorn.glogging.Logger", "greenhorn.logging.Logger"):
        return DEFAULT_LOGGER
    if not (_DOTTED.fullmatch(text) or _COLON.fullmatch(text)):
        raise ValueError("expected a dotted class path such as mypkg.logs.Logger")
    return text


WORKERS_ZERO = "no worker would serve (gunicorn starts none until TTIN adds one); running 1"


def workers(value: object) -> int | Literal["auto"] | Warned:
    """A worker count >= 1, or `auto` (sized from the CPUs and memory available). 0, which
    gunicorn accepts and then serves nothing with, runs 1 worker with a warning."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = _parse_int(value)
    except (TypeError, ValueError):
        number = -1
    if number == 0:
        return Warned(1, WORKERS_ZERO)
    if number < 1:
        raise ValueError("expected an integer >= 1 or 'auto'")
    return number


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def loglevel(value: object) -> str | Warned:
    """One of ``LOG_LEVELS`` (any case); ``warn`` means warning (as in Python's logging).
    Another word, which gunicorn accepts and reads as info, is info with a warning."""
    text = to_str(value).lower()
    if text == "warn":
        return "warning"
    if text in LOG_LEVELS:
        return text
    return Warned("info", "unknown log level; using info, as gunicorn does")


def http_parser(value: object) -> str | Warned:
    """gunicorn's parser choice: ``auto``, ``fast`` (its C extension) or ``python``.
    greenhorn has one parser; ``fast`` says so in a warning."""
    text = str(choice("auto", "fast", "python")(value))
    if text == "fast":
        return Warned(text, "greenhorn has one HTTP parser, its own: 'fast' changes nothing")
    return text


def app_uri(value: object) -> str | None:
    """A WSGI application URI (`module:attr`, `module:factory()`); syntax only."""
    if value is None:
        return None
    text = to_str(value)
    try:
        parse_app(text)
    except ImportFailed as exc:
        raise ValueError(str(exc))
    return text


def _resolve(value: int | str, lookup: Callable[[str], int], what: str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        return lookup(text)
    except KeyError:
        raise ValueError(f"no such {what}: {text!r}") from None


def resolve_uid(value: int | str) -> int:
    """A user name or number to a uid; ValueError (one line) for an unknown name."""
    return _resolve(value, lambda name: pwd.getpwnam(name).pw_uid, "user")


def resolve_gid(value: int | str) -> int:
    """A group name or number to a gid; ValueError (one line) for an unknown name."""
    return _resolve(value, lambda name: grp.getgrnam(name).gr_gid, "group")


def user_id(value: object) -> int:
    """A user name or numeric id → uid."""
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError(f"invalid user id {value!r}")
    return resolve_uid(value if isinstance(value, int) else to_str(value))


def group_id(value: object) -> int:
    """A group name or numeric id → gid."""
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError(f"invalid group id {value!r}")
    return resolve_gid(value if isinstance(value, int) else to_str(value))


def existing_dir(value: object) -> str | None:
    """An existing directory, made absolute (against the current directory)."""
    if value is None:
        return None
    path = Path(to_str(value)).expanduser()
    if not path.is_dir():
        why = "not a directory" if path.exists() else "no such directory"
        raise ValueError(f"can't chdir to {str(path)!r}: {why}")
    return str(path.resolve())


def files_or_patterns(value: object) -> list[str]:
    """Files to watch: literal paths must exist; glob patterns pass through unexpanded."""
    items = str_list(value)
    for item in items:
        if not any(c in item for c in "*?[") and not Path(item).exists():
            raise ValueError(f"{item!r} does not exist")
    return items


def statsd_address(value: object) -> str | None:
    """`HOST:PORT`, `HOST` (port 8125) or `unix://PATH`."""
    if value is None:
        return None
    text = to_str(value)
    if text.startswith("unix://"):
        if len(text) == len("unix://"):
            raise ValueError("empty unix socket path")
        return text
    try:
        check_address(text)
    except ValueError:
        raise ValueError("expected HOST:PORT or unix://PATH")
    if text.startswith(("unix:", "fd://")):
        raise ValueError("expected HOST:PORT or unix://PATH")
    return text


SYSLOG_FACILITIES = (
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "security",
    "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
)  # fmt: skip


def proxy_protocol(value: object) -> Literal["off", "v1", "v2", "auto"]:
    """`off`, `v1`, `v2` or `auto`; booleans and gunicorn's true/false/1/0/none map onto them."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "auto"
    text = to_str(value).lower()
    mapped = {"false": "off", "0": "off", "none": "off", "true": "auto", "1": "auto"}.get(
        text, text
    )
    if mapped == "off":
        return "off"
    if mapped == "v1":
        return "v1"
    if mapped == "v2":
        return "v2"
    if mapped == "auto":
        return "auto"
    raise ValueError("expected off, v1, v2 or auto")


SSL_VERSION_DEFAULT = 2  # ssl.PROTOCOL_TLS (ssl is loaded only for TLS)
SSL_VERSION_IGNORED = (
    "ssl_version is deprecated and ignored, as in gunicorn; set minimum_version in an "
    "ssl_context hook instead"
)


def ssl_version(value: object) -> int | Warned:
    """An `ssl.PROTOCOL_*` constant or its name (`TLS`, `TLSv1_2`, ...). Deprecated in
    gunicorn and ignored there, whatever the value; so here: any value other than the default
    loads with that warning, and one that names no protocol keeps the default."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            number = int(text)
        elif text:
            import ssl  # here, not at the top: a server without TLS never loads libssl

            constant = getattr(ssl, "PROTOCOL_" + text.removeprefix("PROTOCOL_"), None)
            number = int(constant) if isinstance(constant, int) else None
    if number == SSL_VERSION_DEFAULT:
        return number
    return Warned(SSL_VERSION_DEFAULT if number is None else number, SSL_VERSION_IGNORED)


def cert_reqs(value: object) -> int:
    """0/1/2 or CERT_NONE/CERT_OPTIONAL/CERT_REQUIRED."""
    if isinstance(value, str) and value.strip().upper().startswith("CERT_"):
        import ssl

        constant = getattr(ssl, value.strip().upper(), None)
        if constant is None:
            raise ValueError("expected 0, 1, 2, CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED")
        return int(constant)
    try:
        number: int = int_range(0, 2)(value)
    except ValueError:
        raise ValueError("expected 0, 1, 2, CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED")
    return number


def _import_callable(text: str) -> object:
    try:
        return import_object(text)
    except ImportFailed as exc:
        raise ValueError(str(exc))


def hook(name: str) -> Converter:
    """Converter for server hook `name`: a callable (or `module.function` string) that can
    be called with the hook's positional arguments. post_request may take 2, 3 or 4 (as in
    gunicorn) and is adapted to 4."""
    nargs = hooks.arity(name)
    signature = hooks.signature_of(name)

    def convert(value: object) -> object:
        fn = _import_callable(value.strip()) if isinstance(value, str) else value
        if not callable(fn):
            raise TypeError(f"expected a function {signature}, not {type(fn).__name__}")
        if hooks.accepts(fn, nargs):
            return fn
        if name == "post_request":
            if hooks.accepts(fn, 3):
                return lambda worker, req, environ, resp: fn(worker, req, environ)
            if hooks.accepts(fn, 2):
                return lambda worker, req, environ, resp: fn(worker, req)
        raise TypeError(f"must accept {nargs} positional argument(s): {signature}")

    return convert


def platform_syslog_addr() -> str:
    """The usual local syslog address for this platform (gunicorn's choice)."""
    if sys.platform == "darwin":
        return "unix:///var/run/syslog"
    if sys.platform.startswith(("freebsd", "dragonfly")):
        return "unix:///var/run/log"
    if sys.platform.startswith("openbsd"):
        return "unix:///dev/log"
    return "udp://localhost:514"


# --- HTTP/2 ---------------------------------------------------------------------------------

HTTP_PROTOCOLS = ("h1", "h2")  # --http-protocols identifiers (ALPN: http/1.1, h2)


def http_protocols(value: object) -> list[str]:
    """A comma-separated list of `h1` and `h2`, most preferred first (gunicorn's
    ``http_protocols``); None or nothing is `h1` alone. A list (a converted value, or a
    config file's) is checked the same way."""
    if value is None:
        return ["h1"]
    if isinstance(value, list | tuple):
        items = [to_str(item) for item in value]
    elif isinstance(value, str):
        items = value.split(",")
    else:
        raise TypeError(f"expected a comma-separated string, not {type(value).__name__}")
    names = [item.strip().lower() for item in items if item.strip()]
    if not names:
        return ["h1"]
    for name in names:
        if name not in HTTP_PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}: expected h1, h2 or both")
    if len(set(names)) != len(names):
        raise ValueError("a protocol is listed twice")
    return names


def http2_cleartext(value: object) -> Literal["off", "prior-knowledge", "upgrade", "both"]:
    """`off`, `prior-knowledge`, `upgrade` or `both`; None is `off`, and a boolean (a config
    file's `http2_cleartext = True`) is `prior-knowledge` or `off`, as in gunicorn."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "prior-knowledge"
    text = to_str(value).lower()
    if text == "off":
        return "off"
    if text == "prior-knowledge":
        return "prior-knowledge"
    if text == "upgrade":
        return "upgrade"
    if text == "both":
        return "both"
    raise ValueError("expected off, prior-knowledge, upgrade or both")
