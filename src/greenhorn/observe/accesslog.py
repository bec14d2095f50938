"""Rendering of access-log lines: gunicorn's ``access_log_format`` atoms and the JSON form.

Why a module of its own: this is the only logging code on the request hot path, so it is
kept apart from handler plumbing and tuned for it. The format string is compiled once:
only atoms that appear in it are ever computed, and the CLF timestamp is cached per second.

Every atom renders as gunicorn renders it (see ``settings#access-log-format``), with one
deliberate difference: gunicorn escapes only double quotes, which lets a client forge log
lines with CR/LF. Here every text atom that carries client- or app-controlled data is
escaped: ``\\r``, ``\\n``, ``\\t``, ``\\"``, ``\\\\`` and ``\\xNN`` for other control
characters (C0, DEL, C1), ``\\uNNNN`` for the Unicode line/paragraph separators.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from greenhorn.http.parser import Request


class Response(Protocol):
    """What the access log reads of a response: WSGI's ``wsgi.response.Response``, and the
    asgi worker's request cycle and WebSocket session."""

    @property
    def status_code(self) -> int: ...

    @property
    def sent(self) -> int: ...

    @property
    def headers(self) -> list[tuple[str, str]]: ...


DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

# One getter per atom: (req, resp, environ, duration in whole microseconds) -> value.
Getter = Callable[["Request", "Response", Mapping[str, Any], int], "str | int"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\x7f-\x9f\u2028\u2029]')
_NAMED_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
# A mapping key in a %-format: "%(name)". "%%" is matched too so that it is skipped.
_FORMAT_KEY = re.compile(r"%(?:%|\(([^)]*)\))")
# Compact, ASCII-only (non-ASCII and control characters become \uXXXX escapes).
_JSON = json.JSONEncoder(separators=(",", ":"))
# Atoms gunicorn passes as integers, so "%(D)d" style formats keep working.
_NUMERIC_ATOMS = frozenset("BTDM")


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: str) -> str:
    """Make ``value`` safe inside a quoted access-log field: one line, no bare quotes."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    return _NEEDS_ESCAPE.sub(_escape_match, value)


def _text(value: object) -> str:
    """Escaped text for an atom; "-" when the value is missing (None), like gunicorn."""
    if value is None:
        return "-"
    return escape(value if isinstance(value, str) else str(value))


def basic_auth_user(environ: Mapping[str, Any]) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header, or None."""
    header = environ.get("HTTP_AUTHORIZATION")
    if not header or header[:5].lower() != "basic":
        return None
    parts = header.split(" ", 1)
    if len(parts) != 2:
        return None
    try:
        decoded = base64.b64decode(parts[1].strip().encode("latin-1"))
        return decoded.split(b":", 1)[0].decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return None


def _protocol(req: Request, environ: Mapping[str, Any]) -> str:
    proto = environ.get("SERVER_PROTOCOL")
    if proto:
        return str(proto)
    major, minor = req.version
    return f"HTTP/{major}.{minor}"


def _request_header(req: Request, name: str) -> str | None:
    """Last value of request header ``name`` (UPPERCASE), as gunicorn's dict keeps the last."""
    found = None
    for key, value in req.headers:
        if key == name:
            found = value
    return found


def _response_header(resp: Response, name: str) -> str | None:
    """Last value of response header ``name`` (lowercase), compared case-insensitively."""
    found = None
    for key, value in resp.headers:
        if key.lower() == name:
            found = value
    return found


def _environ_value(environ: Mapping[str, Any], name: str) -> object:
    """Environ lookup by lowercase ``name``, case-insensitive like gunicorn's atom table."""
    value = environ.get(name.upper())
    if value is not None:
        return value
    value = environ.get(name)
    if value is not None:
        return value
    for key, value in environ.items():
        if key.lower() == name:
            return value
    return None


def _atom_h(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(environ.get("REMOTE_ADDR") or "-")


def _atom_l(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return "-"


def _atom_u(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(basic_auth_user(environ) or "-")


def _atom_r(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return escape(f"{req.method} {req.uri} {_protocol(req, environ)}")


def _atom_m(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(environ.get("REQUEST_METHOD", req.method))


def _atom_U(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(environ.get("PATH_INFO", req.path))


def _atom_q(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(environ.get("QUERY_STRING", req.query))


def _atom_H(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return escape(_protocol(req, environ))


def _atom_s(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return str(resp.status_code)


def _atom_B(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> int:
    return resp.sent


def _atom_b(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    # gunicorn prints "0" (not CLF's "-") for an empty body; "-" only when nothing is known.
    return "-" if resp.sent is None else str(resp.sent)


def _atom_f(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(environ.get("HTTP_REFERER", "-"))


def _atom_a(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return _text(environ.get("HTTP_USER_AGENT", "-"))


def _atom_T(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> int:
    return us // 1_000_000


def _atom_D(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> int:
    return us


def _atom_M(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> int:
    return us // 1000


def _atom_L(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    seconds, micros = divmod(us, 1_000_000)
    return f"{seconds}.{micros:06d}"


def _atom_p(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return f"<{os.getpid()}>"


def _missing(req: Request, resp: Response, environ: Mapping[str, Any], us: int) -> str:
    return "-"


_SIMPLE_ATOMS: Mapping[str, Getter] = {
    "h": _atom_h,
    "l": _atom_l,
    "u": _atom_u,
    "r": _atom_r,
    "m": _atom_m,
    "U": _atom_U,
    "q": _atom_q,
    "H": _atom_H,
    "s": _atom_s,
    "B": _atom_B,
    "b": _atom_b,
    "f": _atom_f,
    "a": _atom_a,
    "T": _atom_T,
    "D": _atom_D,
    "M": _atom_M,
    "L": _atom_L,
    "p": _atom_p,
}


def _header_getter(kind: str, name: str) -> Getter:
    if kind == "i":
        upper = name.upper()
        return lambda req, resp, environ, us: _text(_request_header(req, upper))
    if kind == "o":
        return lambda req, resp, environ, us: _text(_response_header(resp, name))
    return lambda req, resp, environ, us: _text(_environ_value(environ, name))


def _getter_for(key: str) -> Getter:
    simple = _SIMPLE_ATOMS.get(key)
    if simple is not None:
        return simple
    if key.startswith("{") and len(key) > 3 and key[-2] == "}" and key[-1] in "ioe":
        return _header_getter(key[-1], key[1:-2].lower())
    return _missing


def format_keys(fmt: str) -> list[str]:
    """The mapping keys of a %-style format string, in order, without duplicates."""
    keys: list[str] = []
    for match in _FORMAT_KEY.finditer(fmt):
        key = match.group(1)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


class Clock:
    """Per-second caches of the timestamps access lines carry (one instance per logger).

    Each cache is one ``(second, text)`` tuple, replaced whole, so threads sharing a clock
    never see a second paired with another second's text.
    """

    __slots__ = ("_clf", "_iso")

    def __init__(self) -> None:
        self._clf: tuple[int, str] = (-1, "")
        self._iso: tuple[int, str] = (-1, "")

    def clf(self, now: float) -> str:
        """``[25/Nov/2026:13:05:01 +0000]`` in local time, as gunicorn's ``t`` atom."""
        second = int(now)
        cached = self._clf
        if cached[0] == second:
            return cached[1]
        lt = time.localtime(second)
        offset = lt.tm_gmtoff or 0
        sign = "-" if offset < 0 else "+"
        hours, minutes = divmod(abs(offset) // 60, 60)
        text = (
            f"[{lt.tm_mday:02d}/{_MONTHS[lt.tm_mon - 1]}/{lt.tm_year:04d}:"
            f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d} {sign}{hours:02d}{minutes:02d}]"
        )
        self._clf = (second, text)
        return text

    def iso(self, now: float) -> str:
        """``2026-11-25T13:05:01.123Z``: ISO 8601 in UTC with milliseconds."""
        second = int(now)
        cached = self._iso
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._iso = cached
        millis = min(int((now - second) * 1000), 999)
        return f"{cached[1]}.{millis:03d}Z"


class AccessFormat:
    """A compiled ``access_log_format``: renders one line per request."""

    __slots__ = ("_clock", "_getters", "_time_keys", "fmt")

    def __init__(self, fmt: str, clock: Clock | None = None) -> None:
        self.fmt = fmt
        self._clock = clock or Clock()
        getters: list[tuple[str, Getter]] = []
        time_keys: list[str] = []
        for key in format_keys(fmt):
            if key == "t":
                time_keys.append(key)
            else:
                getters.append((key, _getter_for(key)))
        self._getters = tuple(getters)
        self._time_keys = tuple(time_keys)
        self._check()

    def _check(self) -> None:
        """Fail at startup, not on every request, when the format cannot be rendered."""
        sample: dict[str, Any] = {key: "-" for key, _ in self._getters}
        sample.update({key: 0 for key in sample if key in _NUMERIC_ATOMS})
        sample.update({key: "-" for key in self._time_keys})
        try:
            self.fmt % sample
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"invalid access_log_format {self.fmt!r}: {exc}") from None

    @property
    def keys(self) -> tuple[str, ...]:
        """The atom keys this format uses (what gets computed per request)."""
        return tuple(key for key, _ in self._getters) + self._time_keys

    def render(
        self, req: Request, resp: Response, environ: Mapping[str, Any], request_time: float
    ) -> str:
        us = round(request_time * 1_000_000)
        values = {key: getter(req, resp, environ, us) for key, getter in self._getters}
        if self._time_keys:
            values["t"] = self._clock.clf(time.time())
        return self.fmt % values


def json_record(
    req: Request, resp: Response, environ: Mapping[str, Any], request_time: float, clock: Clock
) -> dict[str, object]:
    """The fields of one JSON access-log line (greenhorn's ``--access-log-json``)."""
    port = environ.get("REMOTE_PORT")
    try:
        remote_port = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        remote_port = None
    us = round(request_time * 1_000_000)
    major, minor = req.version
    user_agent = referer = request_id = None
    for name, value in req.headers:  # one pass; the last of duplicates wins, as for atoms
        if name == "USER-AGENT":
            user_agent = value
        elif name == "REFERER":
            referer = value
        elif name == "X-REQUEST-ID":
            request_id = value
    return {
        "time": clock.iso(time.time()),
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "protocol": f"HTTP/{major}.{minor}",
        "status": resp.status_code,
        "bytes": resp.sent,
        "duration_ms": us / 1000,
        "remote_addr": environ.get("REMOTE_ADDR"),
        "remote_port": remote_port,
        "worker_pid": os.getpid(),
        "user_agent": user_agent,
        "referer": referer,
        "request_id": request_id,
        "queue_ms": round((req.started_at - req.accepted_at) * 1000, 3),
    }


def json_line(
    req: Request, resp: Response, environ: Mapping[str, Any], request_time: float, clock: Clock
) -> str:
    """One JSON object on one line; ``json.dumps`` escapes control characters."""
    return _JSON.encode(json_record(req, resp, environ, request_time, clock))
