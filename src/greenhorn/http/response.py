"""The response side of HTTP/1.1: status line, header validation, framing (sans-IO).

Why a module of its own: every rule that decides what bytes leave the server lives here, so
response splitting and framing bugs have one place to hide and one place to test.

Rules:

- A header name must be a token and a value may not contain CR, LF, NUL or other CTLs
  (CVE-2018-1000164, uvicorn CVE-2020-7695). A bad header from the application is never
  sent: ``prepare`` raises ``InvalidResponse`` and the worker answers 500 instead.
- Hop-by-hop headers from the application (Connection, Keep-Alive, Transfer-Encoding...) are
  dropped: framing and connection management belong to the server (PEP 3333). An
  application's ``Connection: close`` is honoured by closing after the response.
- Framing: the application's Content-Length is respected (the worker cuts a longer body and
  closes after a shorter one); without it, a response to HTTP/1.1 is chunked, also when the
  connection closes after it, so that a body cut short (an application error midway, a
  timeout abort) lacks its last chunk and the client can tell (gunicorn frames the same
  way). Only a response to HTTP/1.0, which has no chunked coding, is delimited by closing
  the connection. HEAD, 1xx, 204 and 304 carry no body; 204 and 1xx carry no
  Content-Length either.
"""

from __future__ import annotations

import re
import time

from greenhorn.http.fields import TCHAR

__all__ = [
    "Framing",
    "InvalidResponse",
    "error_response",
    "field_pair",
    "http_date",
    "informational",
    "prepare",
    "prepare_bytes",
    "reason_phrase",
    "text_pair",
]

STATUS_RE = re.compile(r"[1-9][0-9][0-9] [\t\x20-\x7e\x80-\xff]*")
NAME_RE = re.compile(f"[{TCHAR}]+")
BAD_VALUE_RE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    )
)

_date_second = -1  # the second _date_text formats
_date_text = ""
_time = time.time


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(now: float | None = None) -> str:
    """The IMF-fixdate for ``now`` (default: the current second), computed once a second.

    Formatted here rather than by ``email.utils.formatdate``: the ``email`` package would
    be the worker's largest import after the interpreter's own (1.3 MiB)."""
    global _date_second, _date_text
    second = int(time.time() if now is None else now)
    if _date_second != second:
        t = time.gmtime(second)
        _date_text = (
            f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
        )
        _date_second = second
    return _date_text


class InvalidResponse(ValueError):
    """The application produced a status or header that cannot be sent safely."""


def field_pair(item: object) -> tuple[str, str]:
    """One header an application gave, checked: a (name, value) pair of ``str``, the name a
    token, the value without control characters. Raises ``InvalidResponse``. The one check
    for every response head (HTTP/1.1, HTTP/2, the WebSocket handshake)."""
    if (type(item) is not tuple and not isinstance(item, (tuple, list))) or len(item) != 2:
        raise InvalidResponse(f"header {item!r} is not a (name, value) pair")
    name, value = item
    if type(name) is not str or type(value) is not str:
        raise InvalidResponse(f"header {item!r} is not a pair of str")
    if NAME_RE.fullmatch(name) is None:
        raise InvalidResponse(f"invalid header name {name!r}")
    if BAD_VALUE_RE.search(value):
        raise InvalidResponse(f"invalid value for header {name!r}")
    return name, value


def text_pair(item: object) -> tuple[str, str]:
    """A header pair of ``str`` or of bytes-likes (ASGI headers, early hints) as ``str``
    (latin-1), checked as ``field_pair`` checks. Raises ``InvalidResponse``."""
    name: object
    value: object
    try:
        name, value = item  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InvalidResponse(f"header {item!r} is not a (name, value) pair") from None
    if isinstance(name, (bytes, bytearray, memoryview)):
        name = bytes(name).decode("latin-1")
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    if type(name) is not str or type(value) is not str:
        raise InvalidResponse(f"header {item!r} is not a pair of str or bytes")
    return field_pair((name, value))


class Framing:
    """How the body of one response is delimited, decided by ``prepare``."""

    __slots__ = ("body_allowed", "chunked", "code", "keep_alive", "length")

    def __init__(
        self,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        body_allowed: bool,
        code: int = 200,
    ) -> None:
        self.code = code
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.body_allowed = body_allowed


def prepare(
    status: str,
    headers: list[tuple[str, str]],
    version: tuple[int, int],
    method: str,
    keep_alive: bool,
    server: str,
    known_length: int | None = None,
) -> tuple[bytes, Framing, list[tuple[str, str]]]:
    """Validate the application's status and headers; return (head bytes, framing, headers).

    ``keep_alive`` is the server's wish (request asked for it, worker type supports it).
    ``known_length`` is the body length when the worker already knows it (a one-item list),
    used when the application gave no Content-Length. The returned header list is what was
    actually sent (for the access log and hooks).

    Applications send the same few heads again and again, so the result is remembered per
    distinct input (all but the Date line, which is spliced in); the cache is bounded.
    """
    global _date_line_second, _date_line
    key: tuple[object, ...] | None
    done: _Prepared | None
    try:
        key = (status, method, version, keep_alive, known_length, server, *headers)
        done = _PREPARED.get(key)
    except TypeError:  # an unhashable header item: _build names the problem
        key = done = None
    if done is None:
        done = _build(status, headers, version, method, keep_alive, server, known_length)
        if key is not None:
            if len(_PREPARED) >= _PREPARED_MAX:
                _PREPARED.clear()
            _PREPARED[key] = done
    before, after, framing, sent = done
    if after is None:  # the application sent its own Date
        return before, framing, list(sent)
    second = int(_time())
    if _date_line_second != second:
        _date_line = f"Date: {http_date(second)}\r\n".encode("latin-1")
        _date_line_second = second
    return before + _date_line + after, framing, list(sent)


def prepare_bytes(
    code: int,
    headers: object,
    version: tuple[int, int],
    method: str,
    keep_alive: bool,
    server: str,
    known_length: int | None = None,
) -> tuple[bytes, Framing, list[tuple[str, str]]]:
    """``prepare`` for an integer status and ``(bytes, bytes)`` header pairs (ASGI's
    ``http.response.start``): the same rules, the same bounded cache (the key's int status
    keeps the two apart), and the status line's reason phrase from ``reason_phrase``."""
    global _date_line_second, _date_line
    key: tuple[object, ...] | None
    done: _Prepared | None
    try:
        key = (code, method, version, keep_alive, known_length, server, *headers)  # type: ignore[misc]
        done = _PREPARED.get(key)
    except TypeError:  # not iterable, or an unhashable item: checked below
        key = done = None
    if done is None:
        if type(code) is not int or not 100 <= code <= 999:
            raise InvalidResponse(f"invalid status {code!r}")
        done = _build(
            f"{code} {reason_phrase(code)}",
            _decoded(headers),
            version,
            method,
            keep_alive,
            server,
            known_length,
        )
        if key is not None:
            if len(_PREPARED) >= _PREPARED_MAX:
                _PREPARED.clear()
            _PREPARED[key] = done
    before, after, framing, sent = done
    if after is None:
        return before, framing, list(sent)
    second = int(_time())
    if _date_line_second != second:
        _date_line = f"Date: {http_date(second)}\r\n".encode("latin-1")
        _date_line_second = second
    return before + _date_line + after, framing, list(sent)


def _decoded(headers: object) -> list[tuple[str, str]]:
    """ASGI header pairs (bytes, or bytes-like) as latin-1 text; ``InvalidResponse`` for
    anything else."""
    out: list[tuple[str, str]] = []
    try:
        items = list(headers)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidResponse(f"headers {headers!r} are not a list of pairs") from None
    for item in items:
        try:
            name, value = item
            out.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
        except (TypeError, ValueError):
            raise InvalidResponse(f"header {item!r} is not a pair of bytes") from None
    return out


def informational(code: int, headers: object) -> bytes:
    """A ``1xx`` interim response head (``103 Early Hints``...), its headers validated like
    any response header (``InvalidResponse``); pairs of ``str`` or of ``bytes``."""
    if type(code) is not int or not 100 <= code <= 199 or code == 101:
        raise InvalidResponse(f"invalid informational status {code!r}")
    lines = [f"HTTP/1.1 {code} {reason_phrase(code)}\r\n"]
    try:
        items = list(headers)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidResponse(f"headers {headers!r} are not a list of pairs") from None
    for item in items:
        name, value = text_pair(item)
        lines += (name, ": ", value.strip(" \t"), "\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:  # pragma: no cover - decoded from latin-1 or checked
        raise InvalidResponse("header text is not latin-1") from exc


# RFC 9110 §15 (and 103 Early Hints, RFC 8297; 429 and 431, RFC 6585)
REASONS: dict[int, str] = {
    100: "Continue", 101: "Switching Protocols", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    416: "Range Not Satisfiable", 417: "Expectation Failed", 421: "Misdirected Request",
    422: "Unprocessable Content", 425: "Too Early", 426: "Upgrade Required",
    428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
    505: "HTTP Version Not Supported", 511: "Network Authentication Required",
}  # fmt: skip


def reason_phrase(code: int) -> str:
    """The standard reason phrase for ``code``, or an empty string for one without."""
    return REASONS.get(code, "")


# (head before the Date line, after it or None when the application sent a Date, framing,
# headers sent)
_Prepared = tuple[bytes, bytes | None, Framing, tuple[tuple[str, str], ...]]
_PREPARED: dict[tuple[object, ...], _Prepared] = {}
_PREPARED_MAX = 1024
_date_line_second = -1  # the second _date_line carries
_date_line = b""  # b"Date: ...\r\n"


def _build(
    status: object,
    headers: list[tuple[str, str]],
    version: tuple[int, int],
    method: str,
    keep_alive: bool,
    server: str,
    known_length: int | None,
) -> _Prepared:
    """The uncached ``prepare`` (same arguments, in order). Raises ``InvalidResponse``.

    ``status`` and ``headers`` come from the application: their types are checked here."""
    if type(status) is not str or STATUS_RE.fullmatch(status) is None:
        raise InvalidResponse(f"invalid status {status!r}")
    code = int(status[:3])
    length: int | None = None
    sent: list[tuple[str, str]] = []
    has_date = has_server = False
    lines = ["HTTP/1.1 ", status, "\r\n"]
    item: object
    for item in headers:
        name, value = field_pair(item)
        lname = name.lower()
        if lname == "content-length":
            if not value.isdigit() or not value.isascii() or length is not None:
                raise InvalidResponse(f"invalid Content-Length {value!r}")
            length = int(value)
        elif lname in HOP_BY_HOP:
            if lname == "connection" and "close" in value.lower():
                keep_alive = False
            continue
        elif lname == "date":
            has_date = True
        elif lname == "server":
            has_server = True
        sent.append((name, value))
        lines += (name, ": ", value, "\r\n")

    body_allowed = method != "HEAD" and code >= 200 and code != 204 and code != 304
    if code < 200 or code == 204:
        if length is not None:
            raise InvalidResponse(f"Content-Length on a {code} response")
    elif length is None and known_length is not None and code != 304:
        length = known_length
        value = str(length)
        sent.append(("Content-Length", value))
        lines += ("Content-Length: ", value, "\r\n")
    chunked = False
    if length is None and body_allowed:
        if version >= (1, 1):  # closing or not: a cut body must be detectable
            chunked = True
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            keep_alive = False
    before = "".join(lines)
    lines = []
    if not has_server:
        lines += ("Server: ", server, "\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif version < (1, 1):
        lines.append("Connection: keep-alive\r\n")
    lines.append("\r\n")
    after = "".join(lines)
    try:
        if has_date:
            head, tail = (before + after).encode("latin-1"), None
        else:
            head, tail = before.encode("latin-1"), after.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise InvalidResponse("header text is not latin-1") from exc
    return head, tail, Framing(length, chunked, keep_alive, body_allowed, code), tuple(sent)


def error_response(code: int, reason: str, message: str, server: str) -> bytes:
    """A complete, self-contained error response that closes the connection."""
    body = f"{code} {reason}\n{message}\n".encode("latin-1", "replace")
    return (
        f"HTTP/1.1 {code} {reason}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Date: {http_date()}\r\n"
        f"Server: {server}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode("latin-1") + body


def chunk(data: bytes) -> bytes:
    """Frame one piece of a chunked body (never called with empty data)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
