"""The HTTP/1.1 request parser: bytes in, events out (sans-IO).

Why it looks like this: every worker type (sync, threads, gevent, eventlet) feeds the same
parser, and the tests feed it byte by byte, in random splits and from a fuzzer. So it never
touches a socket, a clock or the config; it gets a frozen ``Limits`` and bytes.

Interface (h11's shape, without h11's per-event overhead)::

    p = Parser(Limits())
    p.feed(data)            # p.feed(b"") means the peer closed
    ev = p.next_event()     # Request | Data | EndOfMessage | NEED_DATA | EOF, or raises
    ev = p.receive(data)    # the same two steps in one call
    p.start_next()          # after EndOfMessage: next pipelined request

Theory of operation:

1. Head. Find the blank line once (the search resumes where it stopped, so feeding a head
   byte by byte stays linear), decode the head as latin-1, split it on CRLF, match the
   request line with one regex and the whole field block with another (see fields.py).
   Only when a check fails do we look closer, to raise the precise error.
2. While the head is incomplete we still police it: the request line limit, the total head
   limit, and bare LF (a strict parser must not wait for a CRLFCRLF that a bare-LF client
   will never send).
3. Framing follows RFC 9112 §6 with no fallbacks: any Transfer-Encoding together with
   Content-Length is refused; the last coding must be exactly one ``chunked``; a TE we
   cannot parse never degrades to Content-Length.
4. Errors are final. The parser keeps the error and raises it again on every call, so the
   bytes after a framing error are never read as a new request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from greenhorn.http import errors
from greenhorn.http.body import END, ChunkedReader, ContentLengthReader, Data, EndOfMessage
from greenhorn.http.fields import (
    BAD_VALUE_RE,
    CONNECTION_CACHE,
    FIELD_BLOCK_RE,
    FIELD_PAIRS,
    SPECIAL_PAIRS,
    TCHAR,
    TOKEN_RE,
    UNDERSCORE_LINES,
    check_codings,
    connection_tokens,
    diagnose_line,
    split_fields,
    unfold,
)

__all__ = [
    "EOF",
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "Limits",
    "Parser",
    "Request",
]

MAX_LINE_CAP = 8190  # gunicorn's ceiling for limit_request_line, also used for "unlimited"
MAX_FIELD_CAP = 65536  # "unlimited" field size still has a ceiling
MAX_FIELDS_CAP = 32768  # gunicorn's ceiling for limit_request_fields
MAX_HEAD_CAP = 4 * 1024 * 1024  # whatever the limits say, a head is never buffered past this


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
EOF = _Sentinel("EOF")


@dataclass(frozen=True, slots=True)
class Limits:
    """The parser's knobs, named after gunicorn's settings (0 means unlimited).

    The effective limits (``line_limit``, ``field_limit``, ``fields_limit``,
    ``head_limit``) are computed once here, not on every request.
    """

    max_line: int = 4094  # limit_request_line
    max_fields: int = 100  # limit_request_fields
    max_field_size: int = 8190  # limit_request_field_size
    header_map: str = "drop"  # drop | refuse | dangerous: header names with "_"
    forwarders: frozenset[str] = frozenset()  # forwarder_headers: "_" names set apart
    permit_obsolete_folding: bool = False
    casefold_http_method: bool = False
    permit_unconventional_http_method: bool = False
    permit_unconventional_http_version: bool = False
    line_limit: int = field(init=False, default=0)
    field_limit: int = field(init=False, default=0)
    fields_limit: int = field(init=False, default=0)
    head_limit: int = field(init=False, default=0)
    line_re: re.Pattern = field(init=False, default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        line = self.max_line if 0 < self.max_line <= MAX_LINE_CAP else MAX_LINE_CAP
        size = self.max_field_size if self.max_field_size > 0 else MAX_FIELD_CAP
        count = self.max_fields if 0 < self.max_fields <= MAX_FIELDS_CAP else MAX_FIELDS_CAP
        head = min(line + 2 + (count + 1) * (size + 2) + 2, MAX_HEAD_CAP)
        object.__setattr__(self, "line_limit", line)
        object.__setattr__(self, "field_limit", size)
        object.__setattr__(self, "fields_limit", count)
        object.__setattr__(self, "head_limit", head)
        strict = not self.permit_unconventional_http_method
        object.__setattr__(self, "line_re", STRICT_LINE_RE if strict else LOOSE_LINE_RE)


class Request:
    """A parsed request head. Header names are UPPERCASE; values are latin-1 text."""

    __slots__ = (
        "accepted_at",
        "chunked",
        "content_length",
        "expect_continue",
        "forwarded",
        "fragment",
        "headers",
        "host",
        "keep_alive",
        "method",
        "path",
        "query",
        "started_at",
        "uri",
        "version",
    )

    def __init__(
        self,
        method: str,
        uri: str,
        path: str,
        query: str,
        fragment: str,
        version: tuple[int, int],
        headers: list[tuple[str, str]],
    ) -> None:
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.fragment = fragment
        self.version = version
        self.headers = headers
        self.keep_alive = version >= (1, 1)
        self.expect_continue = False
        self.chunked = False
        self.content_length: int | None = 0
        self.host: str | None = None
        self.accepted_at = 0.0
        self.started_at = 0.0
        # ("SCRIPT_NAME", value)...: forwarder_headers a trusted proxy may use; None: none
        self.forwarded: list[tuple[str, str]] | None = None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri!r} HTTP/{self.version[0]}.{self.version[1]}>"


# Request line: METHOD SP request-target SP HTTP-version, nothing else.
_TARGET = r"[\x21-\x7e\x80-\xff]++"
_VERSION = r"HTTP/([0-9])\.([0-9])"
STRICT_LINE_RE = re.compile(f"([{TCHAR.replace('A-Za-z', 'A-Z')}]{{3,20}}) ({_TARGET}) {_VERSION}")
LOOSE_LINE_RE = re.compile(f"([{TCHAR}]+) ({_TARGET}) {_VERSION}")
STRICT_METHOD_RE = re.compile(f"[{TCHAR.replace('A-Za-z', 'A-Z')}]{{3,20}}")
METHOD_RE = re.compile(f"[{TCHAR}]+")
TARGET_RE = re.compile(_TARGET)
VERSION_RE = re.compile(_VERSION)
ABSOLUTE_RE = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://([^/?#]*)(.*)", re.DOTALL)
AUTHORITY_RE = re.compile(r"[A-Za-z0-9.\-_~!$&'()*+,;=%]+:[0-9]+|\[[0-9A-Fa-f:.]+\]:[0-9]+")
HOST_RE = re.compile(r"[A-Za-z0-9.\-_~!$&'()*+,;=:%\[\]]*")
DIGITS_RE = re.compile(r"[0-9]{1,18}")
BARE_LF_RE = re.compile(rb"[\r\n]")  # inside one line: any CR or LF is bare
GOOD_HOSTS: set[str] = set()  # Host values that passed HOST_RE (a server sees few); bounded
GOOD_HOSTS_MAX = 256

_HEAD, _BODY, _DONE, _ERROR = range(4)
_CR_OR_LF = (b"\r", b"\n")


class Parser:
    """Incremental request parser for one connection. See the module docstring."""

    __slots__ = (
        "_body",
        "_buf",
        "_checked",
        "_eof",
        "_error",
        "_limits",
        "_nfields",
        "_scan",
        "_state",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits or Limits()
        self._buf = bytearray()
        self._scan = 0  # where the search for the end of the head resumes
        self._checked = 0  # incomplete head: offset of the first line not yet validated
        self._nfields = 0  # incomplete head: field lines validated so far
        self._eof = False
        self._state = _HEAD
        self._body: ContentLengthReader | ChunkedReader | None = None
        self._error: errors.HTTPError | None = None

    # -- input ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer; ``b""`` means the peer closed."""
        if data:
            self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (a pipelined request, for instance)."""
        return len(self._buf)

    # -- output --------------------------------------------------------------------------

    def next_event(self) -> Request | Data | EndOfMessage | _Sentinel:
        """Return the next event, ``NEED_DATA`` or ``EOF``; raise ``errors.HTTPError``."""
        state = self._state
        try:
            if state == _HEAD:
                return self._next_head()
            if state == _BODY:
                body = self._body
                if body is None:
                    self._state = _DONE
                    return END
                event = body.read(self._buf, self._eof, self._limits)
                if event is None:
                    return NEED_DATA
                if event.__class__ is EndOfMessage:
                    self._state = _DONE
                return event
            if state == _DONE:
                return NEED_DATA
        except errors.HTTPError as exc:
            self._fail(exc)
            raise
        assert self._error is not None
        raise self._error

    def receive(self, data: bytes) -> Request | Data | EndOfMessage | _Sentinel:
        """``feed(data)`` then ``next_event()``, in one call (the handler's common step)."""
        if data:
            self._buf += data
        else:
            self._eof = True
        if self._state != _HEAD:
            return self.next_event()
        try:
            return self._next_head()
        except errors.HTTPError as exc:
            self._fail(exc)
            raise

    def body_left(self) -> int | None:
        """Bytes of a Content-Length body not yet returned as ``Data`` (buffered here or not);
        None for a chunked body or outside a body. See ``body_received``."""
        body = self._body
        if self._state != _BODY or body.__class__ is not ContentLengthReader:
            return None
        return body.remaining  # type: ignore[union-attr]

    def body_received(self, n: int) -> None:
        """The caller received ``n`` body bytes itself, straight from the peer. Only allowed
        while nothing is buffered here (``buffered == 0``) and ``n <= body_left()``."""
        if self._buf or n > self._body.remaining:  # type: ignore[union-attr]
            raise RuntimeError("body_received() with buffered bytes or past the body")
        self._body.remaining -= n  # type: ignore[union-attr]

    def start_next(self) -> None:
        """Begin the next request on this connection (after EndOfMessage)."""
        if self._state == _BODY and self._body is None:
            self._state = _DONE
        if self._state != _DONE:
            raise RuntimeError("start_next() before the end of the current message")
        self._state = _HEAD
        self._scan = self._checked = self._nfields = 0

    def _fail(self, exc: errors.HTTPError) -> None:
        self._state = _ERROR
        self._error = exc
        self._buf.clear()

    # -- head ----------------------------------------------------------------------------

    def _next_head(self) -> Request | _Sentinel:
        buf = self._buf
        if buf[:1] in _CR_OR_LF:
            # RFC 9112 §2.2: ignore empty lines before the request line.
            while buf[:1] == b"\r" and buf[1:2] == b"\n":
                del buf[:2]
            if buf[:1] == b"\n":
                raise errors.InvalidRequestLine("bare LF before the request line")
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            return self._incomplete_head()
        head = buf[:end].decode("latin-1")
        del buf[: end + 4]
        if self._scan or self._checked:  # the head came in pieces: reset that state
            self._scan = self._checked = self._nfields = 0
        request = self._parse_head(head)
        # frame the body
        self._state = _BODY
        if request.chunked:
            self._body = ChunkedReader()
        elif request.content_length:
            self._body = ContentLengthReader(request.content_length)
        else:
            self._body = None
        return request

    def _incomplete_head(self) -> _Sentinel:
        """Police a head that has not fully arrived, in byte order, each line only once.

        Complete lines are validated as they arrive (request line, then fields), so the
        error raised is the first violation in the bytes whatever the chunking, and limits
        bite before the blank line arrives.
        """
        buf = self._buf
        limits = self._limits
        pos = self._checked
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            self._check_line(buf[pos:end], pos == 0)
            pos = end + 2
        self._checked = pos
        tail = buf[pos:]
        if tail[-1:] == b"\r":
            tail = tail[:-1]  # the CR of a CRLF still to come
        self._check_line(tail, pos == 0, partial=True)
        if len(buf) > limits.head_limit:
            raise errors.HeaderFieldTooLarge("request head too large")
        self._scan = max(0, len(buf) - 3)
        if self._eof:
            if buf:
                raise errors.IncompleteRequest("connection closed inside the request head")
            return EOF
        return NEED_DATA

    def _check_line(self, raw: bytes | bytearray, first: bool, partial: bool = False) -> None:
        limits = self._limits
        limit = limits.line_limit if first else limits.field_limit
        bad = BARE_LF_RE.search(raw)
        size = bad.start() if bad is not None else len(raw)
        if size > limit:
            if first:
                raise errors.RequestLineTooLong(f"request line over {limit} bytes")
            raise errors.HeaderFieldTooLarge(f"header field over {limit} bytes")
        if bad is not None:
            if first:
                raise errors.InvalidRequestLine("bare CR or LF in the request line")
            line = raw[: bad.start()].decode("latin-1")
            if line:
                self._check_field_prefix(line)
            raise errors.InvalidHeader("bare CR or LF in the header section")
        if partial:
            return
        text = raw.decode("latin-1")
        if first:
            self._request_line(text)
            return
        if text[:1] in (" ", "\t"):
            if not limits.permit_obsolete_folding:
                raise errors.ObsoleteFolding(f"obsolete line folding: {errors.excerpt(text)}")
            return
        if FIELD_BLOCK_RE.fullmatch(text) is None:
            raise diagnose_line(text, errors.InvalidHeader)
        self._nfields += 1
        if self._nfields > limits.fields_limit:
            raise errors.TooManyHeaders(f"more than {limits.fields_limit} header fields")

    def _check_field_prefix(self, line: str) -> None:
        """The part of a field line before a bare CR/LF: report an earlier violation first."""
        if line[:1] in (" ", "\t"):
            if not self._limits.permit_obsolete_folding:
                raise errors.ObsoleteFolding(f"obsolete line folding: {errors.excerpt(line)}")
            return
        name, colon, value = line.partition(":")
        if not colon:
            return  # not yet decidable: the bare CR/LF is the first sure violation
        if TOKEN_RE.fullmatch(name) is None:
            raise errors.InvalidHeaderName(f"invalid field name: {errors.excerpt(name)}")
        if BAD_VALUE_RE.search(value):
            raise diagnose_line(line, errors.InvalidHeader)

    def _request_line(self, line: str) -> tuple[str, str, tuple[int, int], str, str, str]:
        """Validate the request line; return (method, target, version, path, query, fragment)."""
        limits = self._limits
        if len(line) > limits.line_limit:
            raise errors.RequestLineTooLong(f"request line over {limits.line_limit} bytes")
        if limits.casefold_http_method:
            method, sp, rest = line.partition(" ")
            line = method.upper() + sp + rest
        m = limits.line_re.fullmatch(line)
        if m is None:
            raise self._diagnose_request_line(line)
        method, uri, major, minor = m.groups()
        version = self._version(major, minor)
        if uri[0] == "/" and method != "CONNECT":
            return method, uri, version, *_split_target(uri)
        return method, uri, version, *self._other_target(method, uri)

    def _parse_head(self, head: str) -> Request:
        line, _, block = head.partition("\r\n")
        limits = self._limits
        m = None
        if len(line) <= limits.line_limit and not limits.casefold_http_method:
            m = limits.line_re.fullmatch(line)
        if m is not None:
            method, uri, major, minor = m.groups()
        if m is not None and major == "1" and (minor == "1" or minor == "0"):  # the common case
            version = (1, 1) if minor == "1" else (1, 0)
            if uri[0] == "/" and method != "CONNECT":
                if "?" in uri or "#" in uri:
                    path, query, fragment = _split_target(uri)
                else:
                    path, query, fragment = uri, "", ""
            else:
                path, query, fragment = self._other_target(method, uri)
        else:  # everything else, including every error, takes the careful path
            method, uri, version, path, query, fragment = self._request_line(line)
        headers: list[tuple[str, str]] = []
        request = Request(method, uri, path, query, fragment, version, headers)
        if block:
            self._parse_fields(block, request)
        elif version >= (1, 1):
            raise errors.MissingHost("HTTP/1.1 request without a Host header")
        if uri[0] != "/" and "://" in uri:
            # absolute-form: the target's authority replaces Host (RFC 9112 §3.2.2)
            m = ABSOLUTE_RE.fullmatch(uri)
            if m is not None:
                request.host = m.group(1).rpartition("@")[2]
        return request

    def _version(self, major: str, minor: str) -> tuple[int, int]:
        if major == "1" and minor in "01":
            return (1, 1) if minor == "1" else (1, 0)
        if major == "1" and self._limits.permit_unconventional_http_version:
            return (1, 1)
        raise errors.UnsupportedVersion(f"HTTP/{major}.{minor} is not supported")

    def _other_target(self, method: str, uri: str) -> tuple[str, str, str]:
        if uri == "*":
            if method != "OPTIONS":
                raise errors.InvalidTarget("asterisk-form is only allowed with OPTIONS")
            return "*", "", ""
        if method == "CONNECT":
            if AUTHORITY_RE.fullmatch(uri) is None:
                raise errors.InvalidTarget("CONNECT needs host:port")
            return "", "", ""
        m = ABSOLUTE_RE.fullmatch(uri)
        if m is None or not m.group(1):
            raise errors.InvalidTarget(f"invalid request target {errors.excerpt(uri)}")
        rest = m.group(2)
        if not rest.startswith("/"):
            rest = "/" + rest
        return _split_target(rest)

    def _diagnose_request_line(self, line: str) -> errors.HTTPError:
        if "\n" in line or "\r" in line:
            return errors.InvalidRequestLine("bare CR or LF in the request line")
        parts = line.split(" ")
        if len(parts) != 3 or not all(parts):
            return errors.InvalidRequestLine(f"malformed request line {errors.excerpt(line)}")
        method, uri, version = parts
        strict = not self._limits.permit_unconventional_http_method
        if (STRICT_METHOD_RE if strict else METHOD_RE).fullmatch(method) is None:
            return errors.InvalidMethod(f"invalid method {errors.excerpt(method)}")
        if TARGET_RE.fullmatch(uri) is None:
            return errors.InvalidTarget(f"invalid request target {errors.excerpt(uri)}")
        return errors.InvalidVersion(f"invalid HTTP version {errors.excerpt(version)}")

    def _parse_fields(self, block: str, request: Request) -> None:
        limits = self._limits
        lines = block.split("\r\n")
        pairs = list(map(FIELD_PAIRS.get, lines))  # lines seen before are valid: no regex
        known = None not in pairs
        if not known and FIELD_BLOCK_RE.fullmatch(block) is None:
            lines = self._repair_block(block)
        if len(lines) > limits.fields_limit:
            raise errors.TooManyHeaders(f"more than {limits.fields_limit} header fields")
        field_limit = limits.field_limit
        if len(block) > field_limit:  # only then can one line be over the limit
            for line in lines:
                if len(line) > field_limit:
                    raise errors.HeaderFieldTooLarge(f"header field over {field_limit} bytes")
        if not known or not UNDERSCORE_LINES.isdisjoint(lines):
            pairs, specials, forwarded = split_fields(lines, limits.header_map, limits.forwarders)
            if forwarded:
                request.forwarded = forwarded
        else:
            specials = list(filter(None, map(SPECIAL_PAIRS.get, lines)))
        request.headers = pairs
        special = None
        host = connection = None
        for name, value in specials:
            if name == "HOST":
                if host is not None:
                    raise errors.DuplicateHeader("more than one Host header")
                host = value
            elif name == "CONNECTION":
                connection = value if connection is None else connection + "," + value
            else:
                if special is None:
                    special = {}
                special.setdefault(name, []).append(value)
        if host is not None:
            if host not in GOOD_HOSTS:
                if HOST_RE.fullmatch(host) is None:
                    raise errors.InvalidHeader(f"invalid Host {errors.excerpt(host)}")
                if len(GOOD_HOSTS) >= GOOD_HOSTS_MAX:
                    GOOD_HOSTS.clear()
                GOOD_HOSTS.add(host)
            request.host = host
        elif request.version >= (1, 1):
            raise errors.MissingHost("HTTP/1.1 request without a Host header")
        if connection is not None:
            tokens = CONNECTION_CACHE.get(connection)
            if tokens is None:
                tokens = connection_tokens(connection)
            if "close" in tokens:
                request.keep_alive = False
            elif request.version == (1, 0) and "keep-alive" in tokens:
                request.keep_alive = True
        if special is not None:
            self._apply_special(special, request)

    def _repair_block(self, block: str) -> list[str]:
        """The fast check failed: unfold if allowed, else raise the precise error."""
        lines = block.split("\r\n")
        if self._limits.permit_obsolete_folding and lines[0][:1] not in (" ", "\t"):
            lines = unfold(lines)
            if FIELD_BLOCK_RE.fullmatch("\r\n".join(lines)) is not None:
                return lines
        folding = self._limits.permit_obsolete_folding
        for i, line in enumerate(lines):
            if FIELD_BLOCK_RE.fullmatch(line) is None:
                if i == 0 and folding and line[:1] in (" ", "\t"):
                    raise errors.InvalidHeader("whitespace before the first header field")
                raise diagnose_line(line, errors.InvalidHeader)
        raise errors.InvalidHeader("malformed header section")  # pragma: no cover

    def _apply_special(self, special: dict[str, list[str]], request: Request) -> None:
        """Content-Type, Expect and the framing headers (Host and Connection are done)."""
        if len(special.get("CONTENT-TYPE", ())) > 1:
            raise errors.DuplicateHeader("more than one Content-Type header")
        expect = special.get("EXPECT")
        if expect is not None and request.version >= (1, 1):
            request.expect_continue = any(v.lower() == "100-continue" for v in expect)
        lengths = special.get("CONTENT-LENGTH")
        codings = special.get("TRANSFER-ENCODING")
        if codings is not None:
            if lengths is not None:
                raise errors.ConflictingFraming("both Transfer-Encoding and Content-Length")
            if request.version < (1, 1):
                raise errors.InvalidTransferEncoding("Transfer-Encoding on HTTP/1.0")
            check_codings(codings)
            request.chunked = True
            request.content_length = None
        elif lengths is not None:
            if len(lengths) > 1:
                raise errors.DuplicateHeader("more than one Content-Length header")
            value = lengths[0]
            if DIGITS_RE.fullmatch(value) is None:
                raise errors.InvalidContentLength(f"invalid Content-Length {errors.excerpt(value)}")
            request.content_length = int(value)


def _split_target(target: str) -> tuple[str, str, str]:
    """Split an origin-form target into (path, query, fragment), all still percent-encoded."""
    fragment = ""
    if "#" in target:
        target, _, fragment = target.partition("#")
    if "?" in target:
        path, _, query = target.partition("?")
        return path, query, fragment
    return target, "", fragment
