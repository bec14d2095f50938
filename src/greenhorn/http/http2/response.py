"""The response side of HTTP/2: a status and header list → HEADERS fields (sans-IO).

Why a module of its own: the same rules as HTTP/1.1's ``http.response`` (a header name is a
token, a value holds no CR, LF, NUL or other CTL: a bad header from the application is never
sent, ``InvalidResponse``; Content-Length is checked; HEAD, 1xx, 204 and 304 carry no body),
framed the HTTP/2 way: names lower-case, ``:status`` first, no connection-specific fields
(Connection, Keep-Alive, Transfer-Encoding, Upgrade... are dropped: framing belongs to the
server, PEP 3333), and no reason phrase. The framing the body follows is the same
``Framing`` as HTTP/1.1's (never chunked: DATA frames delimit the body).

Applications send the same few heads again and again, so the fields are remembered per
distinct input, Date aside (spliced in once a second); the cache is bounded.
"""

from __future__ import annotations

import time

from greenhorn.http.response import (
    HOP_BY_HOP,
    STATUS_RE,
    Framing,
    InvalidResponse,
    field_pair,
    http_date,
    text_pair,
)

__all__ = ["Fields", "informational", "prepare", "prepare_int", "trailer_fields"]

Fields = list[tuple[bytes, bytes]]

# Fields an HTTP/2 response never carries: HTTP/1.1's hop-by-hop set (the application may
# not send them, PEP 3333), except Trailer, which announces trailers in HTTP/2 as well.
DROPPED = HOP_BY_HOP - {"trailer"}
_STATUS_BYTES = {code: b"%d" % code for code in range(100, 1000)}

# (fields before Date, Date wanted, framing, headers sent as the app gave them)
_Prepared = tuple[tuple[tuple[bytes, bytes], ...], bool, Framing, tuple[tuple[str, str], ...]]
_PREPARED: dict[tuple[object, ...], _Prepared] = {}
_PREPARED_MAX = 1024
_date_second = -1
_date_field = (b"date", b"")
_time = time.time


def prepare(
    status: str,
    headers: list[tuple[str, str]],
    method: str,
    server: str,
    known_length: int | None = None,
) -> tuple[Fields, Framing, list[tuple[str, str]]]:
    """WSGI's status line and headers → (HEADERS fields, framing, headers sent).

    ``known_length`` is the body's length when the worker knows it (a one-item list), sent
    as content-length when the application gave none. Raises ``InvalidResponse``."""
    key: tuple[object, ...] | None
    try:
        key = (status, method, known_length, server, *headers)
        done = _PREPARED.get(key)
    except TypeError:  # an unhashable header item: _build names the problem
        key, done = None, None
    if done is None:
        if type(status) is not str or STATUS_RE.fullmatch(status) is None:
            raise InvalidResponse(f"invalid status {status!r}")
        done = _build(int(status[:3]), headers, method, server, known_length)
        if key is not None:
            _remember(key, done)
    return _finish(done)


def prepare_int(
    code: int,
    headers: list[tuple[str, str]],
    method: str,
    server: str,
    known_length: int | None = None,
) -> tuple[Fields, Framing, list[tuple[str, str]]]:
    """``prepare`` for an integer status and str pairs (the ASGI worker decodes its
    ``(bytes, bytes)`` headers as latin-1 first)."""
    key: tuple[object, ...] | None
    try:
        key = (code, method, known_length, server, *headers)
        done = _PREPARED.get(key)
    except TypeError:
        key, done = None, None
    if done is None:
        if type(code) is not int or not 100 <= code <= 999:
            raise InvalidResponse(f"invalid status {code!r}")
        done = _build(code, headers, method, server, known_length)
        if key is not None:
            _remember(key, done)
    return _finish(done)


def _remember(key: tuple[object, ...], done: _Prepared) -> None:
    if len(_PREPARED) >= _PREPARED_MAX:
        _PREPARED.clear()
    _PREPARED[key] = done


def _finish(done: _Prepared) -> tuple[Fields, Framing, list[tuple[str, str]]]:
    global _date_second, _date_field
    fields, want_date, framing, sent = done
    out = list(fields)
    if want_date:
        second = int(_time())
        if second != _date_second:
            _date_field = (b"date", http_date(second).encode("latin-1"))
            _date_second = second
        out.append(_date_field)
    return out, framing, list(sent)


def _build(
    code: int,
    headers: list[tuple[str, str]],
    method: str,
    server: str,
    known_length: int | None,
) -> _Prepared:
    fields: Fields = [(b":status", _STATUS_BYTES[code])]
    sent: list[tuple[str, str]] = []
    length: int | None = None
    has_date = has_server = False
    item: object
    for item in headers:
        name, value = field_pair(item)
        lname = name.lower()
        if lname == "content-length":
            if not value.isdigit() or not value.isascii() or length is not None:
                raise InvalidResponse(f"invalid Content-Length {value!r}")
            length = int(value)
        elif lname in DROPPED:
            continue
        elif lname == "date":
            has_date = True
        elif lname == "server":
            has_server = True
        sent.append((name, value))
        try:
            fields.append((lname.encode("latin-1"), value.strip(" \t").encode("latin-1")))
        except UnicodeEncodeError as exc:
            raise InvalidResponse("header text is not latin-1") from exc
    body_allowed = method != "HEAD" and code >= 200 and code != 204 and code != 304
    if code < 200 or code == 204:
        if length is not None:
            raise InvalidResponse(f"Content-Length on a {code} response")
    elif length is None and known_length is not None and code != 304:
        length = known_length
        sent.append(("Content-Length", str(length)))
        fields.append((b"content-length", b"%d" % length))
    if not has_server:
        fields.append((b"server", server.encode("latin-1")))
    framing = Framing(length, False, True, body_allowed, code)
    return tuple(fields), not has_date, framing, tuple(sent)


def informational(code: int, headers: object) -> Fields:
    """The fields of a ``1xx`` interim response (``103 Early Hints``), its headers validated
    like any response header (``InvalidResponse``); pairs of ``str`` or of ``bytes``."""
    if type(code) is not int or not 100 <= code <= 199 or code == 101:
        raise InvalidResponse(f"invalid informational status {code!r}")
    fields: Fields = [(b":status", _STATUS_BYTES[code])]
    for name, value in _pairs(headers):
        lname = name.lower()
        if lname in DROPPED or lname == "content-length":
            continue
        fields.append((lname.encode("latin-1"), value.strip(" \t").encode("latin-1")))
    return fields


def trailer_fields(headers: object) -> Fields:
    """Response trailers (pairs of ``str`` or ``bytes``), validated; fields that may not be
    trailers (framing, routing: RFC 9110 §6.5.1) are refused with ``InvalidResponse``."""
    fields: Fields = []
    for name, value in _pairs(headers):
        lname = name.lower()
        if lname in DROPPED or lname in _NOT_TRAILERS:
            raise InvalidResponse(f"{name!r} is not allowed in trailers")
        fields.append((lname.encode("latin-1"), value.strip(" \t").encode("latin-1")))
    return fields


_NOT_TRAILERS = frozenset(
    ("content-length", "content-type", "content-encoding", "content-range", "host", "trailer")
)


def _pairs(headers: object) -> list[tuple[str, str]]:
    """``headers`` as validated (name, value) text pairs: str or bytes pairs accepted."""
    try:
        items = list(headers)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidResponse(f"headers {headers!r} are not a list of pairs") from None
    out: list[tuple[str, str]] = []
    for item in items:
        name, value = text_pair(item)
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidResponse(f"value for header {name!r} is not latin-1") from None
        out.append((name, value))
    return out
