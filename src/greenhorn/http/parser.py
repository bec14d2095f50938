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

from greenhorn.http import errors
from greenhorn.http.body import END, ChunkedReader, ContentLengthReader, Data, EndOfMessage
from greenhorn.http.fields import (
    BAD_VALUE_RE,
    CONNECTION_CACHE,
    FIELD_BLOCK_RE,
    FIELD_PAIRS,
    SPACED_FIELD_RE,
    SPECIAL_PAIRS,
    TCHAR,
    TOKEN_RE,
    UNDERSCORE_LINES,
    check_codings,
    connection_tokens,
    diagnose_line,
    split_fields,
    strip_name_space,
    unfold,
)
from greenhorn.http.limits import Limits
from greenhorn.http.target import HOST_RE, TARGET, TARGET_RE, check_authority, split_other_form

__all__ = [
    "EOF",
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "Limits",
    "Parser",
    "Request",
]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Sentinel("NEED_DATA")
EOF = _Sentinel("EOF")


class Request:
    """A parsed request head. Header names are UPPERCASE; values are latin-1 text.

    ``host`` is the absolute-form target's authority, else the Host value, else None;
    ``fragment`` is always empty (a target with ``#`` is refused)."""

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
        "upgrade",
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
        self.upgrade = False  # "upgrade" among the Connection tokens (a WebSocket, h2c...)
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


# Request line: METHOD SP request-target SP HTTP-version, nothing else (target.py says
# which bytes the target may hold).
_VERSION = r"HTTP/([0-9])\.([0-9])"
STRICT_LINE_RE = re.compile(f"([{TCHAR.replace('A-Za-z', 'A-Z')}]{{3,20}}) ({TARGET}) {_VERSION}")
LOOSE_LINE_RE = re.compile(f"([{TCHAR}]+) ({TARGET}) {_VERSION}")
STRICT_METHOD_RE = re.compile(f"[{TCHAR.replace('A-Za-z', 'A-Z')}]{{3,20}}")
METHOD_RE = re.compile(f"[{TCHAR}]+")
VERSION_LEN = len("HTTP/1.1")
DIGITS_RE = re.compile(r"[0-9]{1,18}")
BARE_LF_RE = re.compile(rb"[\r\n]")  # inside one line: any CR or LF is bare
BARE_CR_LF_RE = re.compile("[\r\n]")  # the same, in a decoded line
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
        "_line_re",
        "_nfields",
        "_scan",
        "_state",
    )

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits = limits or Limits()
        strict = not limits.permit_unconventional_http_method
        self._line_re = STRICT_LINE_RE if strict else LOOSE_LINE_RE
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
        """Append bytes received from the peer; ``b""`` means the peer closed. After an
        error nothing more is kept: the error is final."""
        if data:
            if self._state != _ERROR:
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

    def take_buffered(self) -> bytes:
        """Remove and return the bytes received after the current message: once a
        connection switches protocols (a WebSocket's 101), they belong to the new one."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def body_left(self) -> int | None:
        """Bytes of a Content-Length body not yet returned as ``Data`` (buffered here or not);
        None for a chunked body or outside a body. See ``body_received``."""
        body = self._body
        if self._state != _BODY or body.__class__ is not ContentLengthReader:
            return None
        return body.remaining

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
                raise self._line_too_long(raw[: limit + 1].decode("latin-1"))
            raise errors.HeaderFieldTooLarge(f"header field over {limit + 2} bytes with its CRLF")
        if bad is not None:
            if first:
                raise errors.InvalidRequestLine("bare CR or LF in the request line")
            line = raw[: bad.start()].decode("latin-1")
            if line:
                self._check_field_prefix(line, self._nfields)
            raise errors.InvalidHeader("bare CR or LF in the header section")
        if partial:
            return
        text = raw.decode("latin-1")
        if first:
            self._request_line(text)
            return
        if text[:1] in (" ", "\t"):
            self._check_folded(text, self._nfields)
            return
        if FIELD_BLOCK_RE.fullmatch(text) is None and not (
            limits.strip_header_spaces and SPACED_FIELD_RE.fullmatch(text)
        ):
            raise diagnose_line(text, errors.InvalidHeader)
        self._nfields += 1
        if self._nfields > limits.fields_limit:
            raise errors.TooManyHeaders(f"more than {limits.fields_limit} header fields")

    def _check_field_prefix(self, line: str, fields_before: int) -> None:
        """The part of a field line before a bare CR/LF: report an earlier violation first."""
        if line[:1] in (" ", "\t"):
            self._check_folded(line, fields_before)
            return
        name, colon, value = line.partition(":")
        if not colon:
            return  # not yet decidable: the bare CR/LF is the first sure violation
        if TOKEN_RE.fullmatch(name) is None:
            raise errors.InvalidHeaderName(f"invalid field name: {errors.excerpt(name)}")
        if BAD_VALUE_RE.search(value):
            raise diagnose_line(line, errors.InvalidHeader)

    def _request_line(self, line: str) -> tuple[str, str, tuple[int, int], str, str, str | None]:
        """Validate the request line; return (method, target, version, path, query, authority)
        where authority is the absolute-form target's (None for the other forms)."""
        limits = self._limits
        limit = limits.line_limit
        if len(line) > limit:  # the first violation in byte order, as _check_line finds it
            bad = BARE_CR_LF_RE.search(line, 0, limit + 1)
            if bad is not None:
                raise errors.InvalidRequestLine("bare CR or LF in the request line")
            raise self._line_too_long(line[: limit + 1])
        if limits.casefold_http_method:
            method, sp, rest = line.partition(" ")
            line = method.upper() + sp + rest
        m = self._line_re.fullmatch(line)
        if m is None:
            raise self._diagnose_request_line(line)
        method, uri, major, minor = m.groups()
        version = self._version(major, minor)
        if uri[0] == "/" and method != "CONNECT":
            path, _, query = uri.partition("?")
            return method, uri, version, path, query, None
        return method, uri, version, *split_other_form(method, uri)

    def _parse_head(self, head: str) -> Request:
        line, _, block = head.partition("\r\n")
        limits = self._limits
        m = None
        if len(line) <= limits.line_limit and not limits.casefold_http_method:
            m = self._line_re.fullmatch(line)
        if m is not None:
            method, uri, major, minor = m.groups()
        if m is not None and major == "1" and (minor == "1" or minor == "0"):  # the common case
            version = (1, 1) if minor == "1" else (1, 0)
            authority = None
            if uri[0] == "/" and method != "CONNECT":
                if "?" in uri:
                    path, _, query = uri.partition("?")
                else:
                    path, query = uri, ""
            else:
                path, query, authority = split_other_form(method, uri)
        else:  # everything else, including every error, takes the careful path
            method, uri, version, path, query, authority = self._request_line(line)
        headers: list[tuple[str, str]] = []
        request = Request(method, uri, path, query, "", version, headers)
        if block:
            self._parse_fields(block, request)
        elif version >= (1, 1):
            raise errors.MissingHost("HTTP/1.1 request without a Host header")
        if authority is not None:
            check_authority(request.host, authority, uri)
            request.host = authority  # the target's authority replaces Host (RFC 9112 §3.2.2)
        return request

    def _version(self, major: str, minor: str) -> tuple[int, int]:
        if major == "1" and minor in "01":
            return (1, 1) if minor == "1" else (1, 0)
        if major == "1" and self._limits.permit_unconventional_http_version:
            return (1, 1)
        raise errors.UnsupportedVersion(f"HTTP/{major}.{minor} is not supported")

    def _line_too_long(self, line: str) -> errors.HTTPError:
        """The request line is over the limit (``line``: its first ``line_limit + 1``
        bytes). 414 only if the target is what is long; a method or version that long is
        a malformed line (400), and so is a bad byte before the limit."""
        limits = self._limits
        method, sp, rest = line.partition(" ")
        if limits.casefold_http_method:
            method = method.upper()
        strict = not limits.permit_unconventional_http_method
        if not sp or (STRICT_METHOD_RE if strict else METHOD_RE).fullmatch(method) is None:
            return errors.InvalidMethod(f"invalid method {errors.excerpt(method)}")
        target, sp, version = rest.partition(" ")
        if not target:
            return errors.InvalidRequestLine(f"malformed request line {errors.excerpt(line)}")
        if TARGET_RE.fullmatch(target) is None:
            return errors.InvalidTarget(f"invalid request target {errors.excerpt(target)}")
        if len(version) > VERSION_LEN:  # the version is what is long (or what follows it)
            if " " in version:
                return errors.InvalidRequestLine(f"malformed request line {errors.excerpt(line)}")
            return errors.InvalidVersion(f"invalid HTTP version {errors.excerpt(version)}")
        return errors.RequestLineTooLong(f"request line over {limits.line_limit} bytes")

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
        cached = list(map(FIELD_PAIRS.get, lines))  # lines seen before are valid: no regex
        known = None not in cached
        field_limit = limits.field_limit
        if (
            (not known and FIELD_BLOCK_RE.fullmatch(block) is None)
            or len(lines) > limits.fields_limit
            # only if the block is that long can one of its lines be
            or (len(block) > field_limit and max(map(len, lines)) > field_limit)
        ):
            lines = self._checked_lines(lines)
        if not known or not UNDERSCORE_LINES.isdisjoint(lines):
            pairs, specials, forwarded = split_fields(lines, limits.header_map, limits.forwarders)
            if forwarded:
                request.forwarded = forwarded
        else:
            pairs = cached  # type: ignore[assignment]  # known: no None in it
            specials = list(filter(None, map(SPECIAL_PAIRS.get, lines)))
        request.headers = pairs
        special: dict[str, list[str]] | None = None
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
                    what = f"invalid Host {errors.excerpt(host)}" if host else "empty Host"
                    raise errors.InvalidHeader(what)
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
            if "upgrade" in tokens:
                request.upgrade = True
            if "close" in tokens:
                request.keep_alive = False
            elif request.version == (1, 0) and "keep-alive" in tokens:
                request.keep_alive = True
        if special is not None:
            self._apply_special(special, request)

    def _checked_lines(self, lines: list[str]) -> list[str]:
        """A fast check failed: raise the first violation, checking line by line in the order
        ``_check_line`` checks a head that arrives in pieces (so the error is the same however
        the bytes came); if there is none (folded lines, permitted), return them unfolded."""
        limits = self._limits
        folding = limits.permit_obsolete_folding
        stripping = limits.strip_header_spaces
        count = 0
        for line in lines:
            bad = BARE_CR_LF_RE.search(line)
            size = bad.start() if bad is not None else len(line)
            if size > limits.field_limit:
                raise errors.HeaderFieldTooLarge(
                    f"header field over {limits.field_limit + 2} bytes with its CRLF"
                )
            if bad is not None:
                if size:
                    self._check_field_prefix(line[:size], count)
                raise errors.InvalidHeader("bare CR or LF in the header section")
            if line[:1] in (" ", "\t"):
                self._check_folded(line, count)
                continue
            if FIELD_BLOCK_RE.fullmatch(line) is None and not (
                stripping and SPACED_FIELD_RE.fullmatch(line)
            ):
                raise diagnose_line(line, errors.InvalidHeader)
            count += 1
            if count > limits.fields_limit:
                raise errors.TooManyHeaders(f"more than {limits.fields_limit} header fields")
        if not (folding or stripping):  # pragma: no cover - a fast check failed, so a line did
            raise errors.InvalidHeader("malformed header section")
        if folding:
            lines = unfold(lines)
        if stripping:
            lines = [strip_name_space(line) for line in lines]
        for line in lines:
            if FIELD_BLOCK_RE.fullmatch(line) is None:
                raise diagnose_line(line, errors.InvalidHeader)
        return lines

    def _check_folded(self, line: str, fields_before: int) -> None:
        """A field line that starts with SP or HTAB: obs-fold, refused unless permitted, and
        never before the first field line."""
        if not self._limits.permit_obsolete_folding:
            raise errors.ObsoleteFolding(f"obsolete line folding: {errors.excerpt(line)}")
        if not fields_before:
            raise errors.InvalidHeader("whitespace before the first header field")

    def _apply_special(self, special: dict[str, list[str]], request: Request) -> None:
        """Content-Type, Expect and the framing headers (Host and Connection are done)."""
        if len(special.get("CONTENT-TYPE", ())) > 1:
            raise errors.DuplicateHeader("more than one Content-Type header")
        expect = special.get("EXPECT")
        if expect is not None:
            # RFC 9110 §10.1.1: 100-continue is the only expectation; HTTP/1.0 ignores it
            members = [m.strip(" \t").lower() for v in expect for m in v.split(",")]
            for member in members:
                if member and member != "100-continue":
                    raise errors.ExpectationFailed(
                        f"unsupported expectation {errors.excerpt(member)}"
                    )
            request.expect_continue = request.version >= (1, 1) and "100-continue" in members
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
            request.content_length = length = int(value)
            if self._limits.max_body and length > self._limits.max_body:
                raise errors.PayloadTooLarge(f"request body over {self._limits.max_body} bytes")
