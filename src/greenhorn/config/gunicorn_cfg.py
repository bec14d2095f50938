"""greenhorn's settings as gunicorn's ``cfg`` object: for classes written against gunicorn.

Why it exists: a worker class built on ``gunicorn.workers.base.Worker`` (uvicorn's
``UvicornWorker``, aiohttp's ``GunicornWebWorker``, an in-house ``SyncWorker`` subclass) and a
logger built on ``gunicorn.glogging.Logger`` read their settings from gunicorn's ``Config``:
every setting as an attribute (``cfg.keepalive``), a few computed ones (``cfg.is_ssl``,
``cfg.ssl_options``, ``cfg.uid``, ``cfg.env``, ``cfg.worker_class_str``...), the raw rows
(``cfg.settings["backlog"].value``) and two methods (``forwarded_allow_networks()``,
``proxy_allow_networks()``). ``GunicornConfig`` answers all of that from greenhorn's frozen
``Config``, with gunicorn's names and gunicorn's values:

- a setting greenhorn has is greenhorn's value, converted where gunicorn holds it in another
  shape (``statsd_host`` as ``(host, port)``, ``pythonpath`` as one comma-separated string);
- a gunicorn setting greenhorn has not built (HTTP/2, dirty arbiters) is gunicorn's own
  default, read from gunicorn's table: these classes only run where gunicorn is installed;
- anything else is an ``AttributeError`` worded as gunicorn's.

It is a read-only view (gunicorn's ``cfg`` refuses attribute assignment too); ``set`` is for
the Python API's builder (``greenhorn.app.base``), not for this view.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from greenhorn.config.importer import ImportFailed, import_object
from greenhorn.config.settings import BY_NAME

__all__ = ["GunicornConfig", "SettingValue", "gunicorn_defaults", "is_subclass_of"]

SSL_SECTION = "SSL"


def is_subclass_of(cls: object, module: str, name: str) -> bool:
    """True when ``cls`` is a class with ``module.name`` in its MRO, found without importing
    ``module`` (gunicorn is the user's library, never one of greenhorn's)."""
    mro = getattr(cls, "__mro__", ())
    return any(getattr(c, "__module__", "") == module and c.__name__ == name for c in mro)


@dataclass(frozen=True, slots=True)
class SettingValue:
    """One row of ``cfg.settings`` as gunicorn's classes read it: ``.value`` and ``.get()``."""

    name: str
    section: str
    value: object

    def get(self) -> object:
        return self.value


def gunicorn_defaults() -> dict[str, tuple[str, object]]:
    """``{name: (section, default)}`` from gunicorn's own settings table, or ``{}`` when
    gunicorn is not importable."""
    try:
        table = import_object("gunicorn.config:KNOWN_SETTINGS")
    except ImportFailed:
        return {}
    found: dict[str, tuple[str, object]] = {}
    for row in table if isinstance(table, list) else ():
        name = getattr(row, "name", None)
        if isinstance(name, str):
            found[name] = (str(getattr(row, "section", "")), getattr(row, "default", None))
    return found


def _statsd_address(value: object) -> object:
    """``statsd_host`` as gunicorn holds it: ``(host, port)``, or a unix socket path."""
    if not isinstance(value, str):
        return value
    if value.startswith("unix:"):
        return re.split(r"unix:(//)?", value)[-1]
    host, port = value, "8125"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] or port
    elif ":" in value:
        host, port = value.rsplit(":", 1)
    try:
        return host.lower(), int(port)
    except ValueError:
        return value


def _address(bind: str) -> object:
    """One ``bind`` entry as gunicorn's ``cfg.address`` lists it."""
    if bind.startswith("unix:"):
        return re.split(r"unix:(//)?", bind)[-1]
    if bind.startswith("fd://"):
        return int(bind[5:])
    value = bind[6:] if bind.startswith("tcp://") else bind
    converted = _statsd_address(value if ":" in value else f"{value}:8000")
    return converted


class GunicornConfig:
    """gunicorn's ``cfg`` over greenhorn's ``Config`` (see the module docstring).

    ``worker_class``: the class gunicorn's ``cfg.worker_class`` returns (the user's class,
    not greenhorn's host of it); ``overrides``: values the master knows better than the
    settings do (``workers`` once ``-w auto`` is sized)."""

    _cfg: object
    _worker_class: type | None
    _overrides: dict[str, object]
    _foreign: dict[str, tuple[str, object]] | None
    _networks: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]

    def __init__(
        self,
        cfg: object,
        *,
        worker_class: type | None = None,
        overrides: Mapping[str, object] | None = None,
    ) -> None:
        object.__setattr__(self, "_cfg", cfg)
        object.__setattr__(self, "_worker_class", worker_class)
        object.__setattr__(self, "_overrides", dict(overrides or {}))
        object.__setattr__(self, "_foreign", None)  # gunicorn's defaults, read once
        object.__setattr__(self, "_networks", {})

    @property
    def greenhorn(self) -> object:
        """The greenhorn ``Config`` behind this view."""
        return self._cfg

    # -- gunicorn's computed attributes ----------------------------------------------------

    @property
    def worker_class(self) -> object:
        if self._worker_class is not None:
            return self._worker_class
        name = str(self._value("worker_class"))
        try:
            return import_object(name)
        except ImportFailed:  # one of greenhorn's own types, named as in -k
            return name

    @property
    def worker_class_str(self) -> str:
        if self._worker_class is not None:
            cls = self._worker_class
            return f"{cls.__module__}.{cls.__qualname__}"
        name = str(self._value("worker_class"))
        is_sync = name == "sync" or name.endswith("SyncWorker")
        threads = self._value("threads")
        return "gthread" if is_sync and isinstance(threads, int) and threads > 1 else name

    @property
    def logger_class(self) -> object:
        spec = self._value("logger_class")
        if isinstance(spec, type):
            return spec
        if spec in (None, "", "simple"):
            spec = "gunicorn.glogging.Logger"
        return import_object(str(spec))

    @property
    def address(self) -> list[object]:
        return [_address(str(b)) for b in self._list("bind")]

    @property
    def uid(self) -> object:
        return self._value("user")

    @property
    def gid(self) -> object:
        return self._value("group")

    @property
    def proc_name(self) -> object:
        return self._value("proc_name") or self._value("default_proc_name")

    @property
    def is_ssl(self) -> bool:
        return bool(self._value("certfile") or self._value("keyfile"))

    @property
    def ssl_options(self) -> dict[str, object]:
        return {
            name: value.value
            for name, value in self.settings.items()
            if value.section == SSL_SECTION
        }

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in self._list("raw_env"):
            key, _, value = str(item).partition("=")
            env[key] = value
        return env

    @property
    def sendfile(self) -> bool:
        return self._value("sendfile") is not False

    @property
    def paste_global_conf(self) -> dict[str, str] | None:
        raw = self._list("raw_paste_global_conf")
        if not raw:
            return None
        conf: dict[str, str] = {}
        for item in raw:
            key, value = re.split(r"(?<!\\)=", str(item), maxsplit=1)
            conf[key.replace("\\=", "=")] = value.replace("\\=", "=")
        return conf

    @property
    def settings(self) -> dict[str, SettingValue]:
        """Every setting, gunicorn's and greenhorn's, as ``name -> .value``."""
        rows = {
            name: SettingValue(name, section, default)
            for name, (section, default) in self._foreign_defaults().items()
        }
        for name, setting in BY_NAME.items():
            rows[name] = SettingValue(name, setting.section, self._converted(name))
        return rows

    def forwarded_allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return self._network_list("forwarded_allow_ips")

    def proxy_allow_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return self._network_list("proxy_allow_ips")

    # -- every other setting -----------------------------------------------------------------

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in BY_NAME or name in self._overrides:
            return self._converted(name)
        foreign = self._foreign_defaults()
        if name in foreign:
            return foreign[name][1]
        raise AttributeError(f"No configuration setting for: {name}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Invalid access!")

    def __dir__(self) -> Iterator[str]:
        return iter(sorted({*BY_NAME, *self._foreign_defaults(), *type(self).__dict__}))

    def __repr__(self) -> str:
        return f"<GunicornConfig over {self._cfg!r}>"

    # -- helpers -------------------------------------------------------------------------------

    def _value(self, name: str) -> object:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._cfg, name, BY_NAME[name].make_default() if name in BY_NAME else None)

    def _list(self, name: str) -> list[object]:
        value = self._value(name)
        return list(value) if isinstance(value, list | tuple) else []

    def _converted(self, name: str) -> object:
        """A greenhorn value in the shape gunicorn holds it in."""
        value = self._value(name)
        convert = _SHAPES.get(name)
        return convert(value) if convert is not None else value

    def _foreign_defaults(self) -> dict[str, tuple[str, object]]:
        found = self._foreign
        if found is None:
            found = gunicorn_defaults()
            object.__setattr__(self, "_foreign", found)
        return found

    def _network_list(self, name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        cache = self._networks
        if name not in cache:
            cache[name] = [
                ipaddress.ip_network(str(a), strict=False)
                for a in self._list(name)
                if a != "*" and not str(a).startswith("unix:")
            ]
        return cache[name]


def _pythonpath(value: object) -> object:
    if isinstance(value, list | tuple):
        return ",".join(str(p) for p in value) or None
    return value


def _workers(value: object) -> object:
    return (os.cpu_count() or 1) if value == "auto" else value


_SHAPES: dict[str, Callable[[object], object]] = {
    "statsd_host": _statsd_address,
    "pythonpath": _pythonpath,
    "workers": _workers,
}
