"""The uWSGI binary protocol, request side: what nginx's ``uwsgi_pass`` sends (sans-IO).

Why a module of its own: behind nginx, ``--protocol uwsgi`` replaces the HTTP/1.1 request
head with a binary packet of CGI variables. Reading it is a parser of its own, with its own
failure modes, and like the HTTP parser it must be testable byte by byte without a socket.
Its output is the HTTP parser's: a ``Request`` (a ``UwsgiRequest``, which also carries the
raw variables), then ``Data`` and ``EndOfMessage`` from the same Content-Length reader, so
the connection handler, the environ and the access log take it unchanged.

Wire format (https://uwsgi-docs.readthedocs.io/en/latest/Protocol.html)::

    modifier1 (u8, 0: WSGI variables)  datasize (u16 LE)  modifier2 (u8)
    datasize bytes of: key size (u16 LE), key, value size (u16 LE), value; repeated
    then CONTENT_LENGTH bytes of request body

Interface (the HTTP parser's)::

    p = UwsgiParser(Limits())   # the same Limits as HTTP: header count and size, URI length
    p.feed(data)                # p.feed(b"") means the peer closed
    ev = p.next_event()         # UwsgiRequest | Data | EndOfMessage | NEED_DATA | EOF
    p.start_next()              # after EndOfMessage: the next packet on this connection

Rules (each failure raises an ``errors.HTTPError``: this module's classes for the packet
itself, the HTTP parser's own for the request it describes; errors are final; the peer is a
proxy, so the worker answers and closes the connection):

- The packet is read only once it is whole; its size is checked against ``max_packet``
  from the 4-byte header, before it is buffered. modifier1 must be 0.
- Every key and value lies inside the packet, with nothing left over; keys are non-empty
  ASCII tokens; a variable other than ``HTTP_*`` appears once.
- ``HTTP_*`` variables are the request headers (``HTTP_X_FOO`` → ``X-FOO``), validated as
  field values and counted against the header limits. nginx before 1.23 sends a repeated
  request header as repeated variables: they stay repeated headers, as on HTTP/1.1; Host,
  Content-Length and Content-Type may not repeat.
- The body is framed by ``CONTENT_LENGTH`` (empty means none; only a proxy that sends no
  such variable has its ``HTTP_CONTENT_LENGTH`` used instead): nginx always buffers a
  chunked request and sends its length, so ``HTTP_TRANSFER_ENCODING``,
  ``HTTP_CONTENT_LENGTH`` and ``HTTP_CONTENT_TYPE`` are not headers here. Two lengths that
  disagree are refused, and a Transfer-Encoding without a length cannot be framed.
- ``keep_alive`` is False: a uwsgi response has no framing of its own and nginx reads it
  until the connection closes (nginx 1.22 closes the upstream connection after each
  response even with ``keepalive`` set). A peer that does reuse connections is served by
  ``start_next``, exactly as with HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import re

from greenhorn.http import errors
from greenhorn.http.body import ContentLengthReader
from greenhorn.http.fields import BAD_VALUE_RE, TOKEN_RE
from greenhorn.http.limits import Limits
from greenhorn.http.parser import (
    _BODY,
    DIGITS_RE,
    EOF,
    GOOD_HOSTS,
    GOOD_HOSTS_MAX,
    METHOD_RE,
    NEED_DATA,
    Parser,
    Request,
    _Sentinel,
)
from greenhorn.http.target import HOST_RE, TARGET_RE, split_other_form

__all__ = [
    "MAX_PACKET",
    "DuplicateVar",
    "IncompletePacket",
    "InvalidPacket",
    "InvalidVar",
    "PacketTooLarge",
    "UnsupportedModifier",
    "UwsgiParser",
    "UwsgiRequest",
]

MAX_PACKET = 65535  # datasize is 16 bits: no packet is larger


class InvalidPacket(errors.HTTPError):
    """A malformed uwsgi packet: sizes that lie (a key or value past the packet's end,
    bytes left over), an empty or non-token key."""


class PacketTooLarge(errors.HTTPError):
    """datasize over ``max_packet``."""

    code = 431
    reason = "Request Header Fields Too Large"


class UnsupportedModifier(errors.HTTPError):
    """modifier1 other than 0 (WSGI variables)."""

    code = 501
    reason = "Not Implemented"


class IncompletePacket(errors.HTTPError):
    """The connection closed inside a packet."""


class DuplicateVar(errors.HTTPError):
    """A variable other than ``HTTP_*`` appears twice."""


class InvalidVar(errors.HTTPError):
    """A variable the server interprets has a value outside its grammar, or a required one
    is missing."""


class UwsgiRequest(Request):
    """A ``Request`` made from a uwsgi packet, with the proxy's variables.

    ``vars`` holds every variable except ``HTTP_*`` (those are ``headers``): REMOTE_ADDR,
    REMOTE_PORT, SERVER_NAME, SERVER_PORT, SCRIPT_NAME, PATH_INFO, DOCUMENT_ROOT, HTTPS...
    as the proxy sent them, latin-1 text. ``scheme`` is ``https`` when UWSGI_SCHEME,
    HTTPS or REQUEST_SCHEME say so, else ``http``. ``path`` is PATH_INFO percent-encoded
    (so that decoding it, as the environ does, gives PATH_INFO back), or REQUEST_URI's path
    when the proxy sent no PATH_INFO.
    """

    __slots__ = ("extensions", "scheme", "vars")

    def __init__(
        self,
        method: str,
        uri: str,
        path: str,
        query: str,
        version: tuple[int, int],
        headers: list[tuple[str, str]],
        variables: dict[str, str],
        scheme: str,
    ) -> None:
        super().__init__(method, uri, path, query, "", version, headers)
        self.vars = variables
        self.scheme = scheme
        self.keep_alive = False
        self.extensions = False  # a dotted name among the variables (``wsgi.url_scheme``)

    @property
    def remote_addr(self) -> str:
        """The client's address as the proxy saw it (REMOTE_ADDR), or ""."""
        return self.vars.get("REMOTE_ADDR", "")

    @property
    def remote_port(self) -> str:
        """The client's port (REMOTE_PORT), or ""."""
        return self.vars.get("REMOTE_PORT", "")

    @property
    def server_name(self) -> str:
        """SERVER_NAME as the proxy sent it (nginx: the ``server_name``, possibly "")."""
        return self.vars.get("SERVER_NAME", "")

    @property
    def server_port(self) -> str:
        """SERVER_PORT as the proxy sent it, or ""."""
        return self.vars.get("SERVER_PORT", "")

    @property
    def script_name(self) -> str | None:
        """SCRIPT_NAME if the proxy set one (``uwsgi_param SCRIPT_NAME /app``)."""
        return self.vars.get("SCRIPT_NAME")

    @property
    def path_info(self) -> str | None:
        """PATH_INFO as the proxy sent it (already percent-decoded by nginx)."""
        return self.vars.get("PATH_INFO")

    def __repr__(self) -> str:
        return f"<UwsgiRequest {self.method} {self.uri!r} from {self.remote_addr or '?'}>"


def _diagnose(text: str) -> None:
    """Walk a block whose sizes do not add up, and raise for the first one that lies."""
    pos = 0
    end = len(text)
    while pos < end:
        if pos + 2 > end:
            raise InvalidPacket("stray byte after the last variable")
        key_end = pos + 2 + (ord(text[pos]) | ord(text[pos + 1]) << 8)
        if key_end == pos + 2:
            raise InvalidPacket("empty variable name")
        if key_end + 2 > end:
            raise InvalidPacket("variable name runs past the end of the packet")
        value_end = key_end + 2 + (ord(text[key_end]) | ord(text[key_end + 1]) << 8)
        if value_end > end:
            key = errors.excerpt(text[pos + 2 : key_end])
            raise InvalidPacket(f"value of {key} runs past the end of the packet")
        pos = value_end
    raise AssertionError("_diagnose() on a valid block")  # pragma: no cover


# Variable names seen before, as ``_classify`` returns them. A proxy sends the same few
# names on every request, so each is validated once. Bounded.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 1024


def _classify(key: str) -> str:
    """Validate a variable name; return "" for a CGI variable, its header name for HTTP_*,
    or "." + the name for a dotted (extension) name such as ``wsgi.url_scheme``, which the
    parser sets apart with the headers (rare: off the common path)."""
    if not key:
        raise InvalidPacket("empty variable name")
    if not key.isascii() or TOKEN_RE.fullmatch(key) is None:
        raise InvalidPacket(f"invalid variable name {errors.excerpt(key)}")
    name = ""
    if key.startswith("HTTP_"):
        name = key[5:].replace("_", "-")
        if not name:
            raise InvalidPacket("variable HTTP_ names no header")
    elif "." in key:
        name = "." + key
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()
    _KEYS[key] = name
    return name


# Request headers that describe the proxy's framing of the body, not ours.
_FRAMING = {  # header name -> its variable
    "CONTENT-LENGTH": "HTTP_CONTENT_LENGTH",
    "CONTENT-TYPE": "HTTP_CONTENT_TYPE",
    "TRANSFER-ENCODING": "HTTP_TRANSFER_ENCODING",
}
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
_VERSION_RE = re.compile(r"HTTP/([0-9])\.([0-9])")
_VERSIONS = {"HTTP/1.1": (1, 1), "HTTP/1.0": (1, 0), "HTTP/2.0": (2, 0)}
_SAFE_PATH = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
_UNSAFE_PATH_RE = re.compile(f"[^{re.escape(_SAFE_PATH)}]")
_QUOTE_TABLE = {c: f"%{c:02X}" for c in range(256) if chr(c) not in _SAFE_PATH}


def _version(protocol: str) -> tuple[int, int]:
    """SERVER_PROTOCOL ``HTTP/d.d`` → (major, minor): the version the client spoke to the
    proxy (nginx says HTTP/2.0 for an HTTP/2 client)."""
    m = _VERSION_RE.fullmatch(protocol)
    if m is None:
        raise errors.InvalidVersion(f"invalid SERVER_PROTOCOL {errors.excerpt(protocol)}")
    return int(m.group(1)), int(m.group(2))


def _quote_path(path: str) -> str:
    """Percent-encode a decoded path (latin-1 text) so that decoding gives it back."""
    if _UNSAFE_PATH_RE.search(path) is None:
        return path
    return path.translate(_QUOTE_TABLE)


class UwsgiParser(Parser):
    """Incremental uwsgi request parser for one connection. See the module docstring.

    Input, events, the body hand-off and ``start_next`` are the HTTP parser's: only the
    head differs (a packet of variables instead of lines), so only ``_next_head`` is new."""

    __slots__ = ("_max_packet",)

    def __init__(self, limits: Limits | None = None, max_packet: int = MAX_PACKET) -> None:
        """``max_packet``: the largest variable block accepted (datasize), at most 65535."""
        super().__init__(limits)
        self._max_packet = min(max_packet, MAX_PACKET) if max_packet > 0 else MAX_PACKET

    # -- the packet ----------------------------------------------------------------------

    def _next_head(self) -> UwsgiRequest | _Sentinel:
        buf = self._buf
        size = len(buf)
        if size >= 4:
            if buf[0] != 0:
                raise UnsupportedModifier(f"uwsgi modifier1 {buf[0]} (only 0 is served)")
            datasize = buf[1] | buf[2] << 8
            if datasize > self._max_packet:
                raise PacketTooLarge(f"uwsgi packet of {datasize} bytes (limit {self._max_packet})")
            if size >= 4 + datasize:
                block = bytes(buf[4 : 4 + datasize])
                del buf[: 4 + datasize]
                request = self._request(block)
                length = request.content_length
                self._body = ContentLengthReader(length) if length else None
                self._state = _BODY
                return request
        elif size and buf[0] != 0:
            raise UnsupportedModifier(f"uwsgi modifier1 {buf[0]} (only 0 is served)")
        if self._eof:
            if buf:
                raise IncompletePacket("connection closed inside a uwsgi packet")
            return EOF
        return NEED_DATA

    def _request(self, block: bytes) -> UwsgiRequest:
        """The Request a packet's variable block describes (see the module docstring for the
        rules). One pass over the block: the sizes are read from the bytes, the names and
        values sliced from one latin-1 decoding of it (same offsets), and each variable goes
        straight to ``variables`` or ``headers``; a block whose sizes do not add up is
        walked again by ``_diagnose`` to name the lie."""
        text = block.decode("latin-1")
        end = len(block)
        known = _KEYS
        variables: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        append = headers.append
        pos = 0
        try:
            while pos < end:
                key_end = pos + 2 + (block[pos] | block[pos + 1] << 8)
                value_end = key_end + 2 + (block[key_end] | block[key_end + 1] << 8)
                if value_end > end:
                    break
                key = text[pos + 2 : key_end]
                pos = value_end
                name = known.get(key)
                if name is None:
                    name = _classify(key)
                if name:
                    append((name, text[key_end + 2 : value_end]))
                elif key in variables:
                    raise DuplicateVar(f"variable {key} sent twice")
                else:
                    variables[key] = text[key_end + 2 : value_end]
        except IndexError:
            pos = -1
        if pos != end:
            _diagnose(text)
        framing: dict[str, str] = {}
        extensions = False
        if headers:
            headers, extensions = self._headers(headers, framing, variables)
        request = self._build(variables, headers, framing)
        if len(request.headers) > self._limits.fields_limit:
            raise errors.TooManyHeaders(f"more than {self._limits.fields_limit} header fields")
        request.extensions = extensions
        return request

    def _headers(
        self, pairs: list[tuple[str, str]], framing: dict[str, str], variables: dict[str, str]
    ) -> tuple[list[tuple[str, str]], bool]:
        """The HTTP_* variables as header fields: the field size limit, values stripped and
        free of control characters, one Host. The proxy's framing headers go to ``framing``
        (by variable name) instead: they describe the proxy's body, not ours. Dotted names
        (``_classify``) go to ``variables``; the flag returned says there was one."""
        limit = self._limits.field_limit
        headers: list[tuple[str, str]] = []
        host_seen = False
        extensions = False
        for name, value in pairs:
            if name[0] == ".":
                dotted = name[1:]
                if dotted in variables:
                    raise DuplicateVar(f"variable {dotted} sent twice")
                variables[dotted] = value
                extensions = True
                continue
            if len(name) + len(value) + 2 > limit:
                raise errors.HeaderFieldTooLarge(f"header field over {limit} bytes")
            key = _FRAMING.get(name)
            if key is not None:
                if key in framing:
                    raise errors.DuplicateHeader(f"{key} repeated")
                if BAD_VALUE_RE.search(value):
                    raise errors.InvalidHeader(f"control character in value of {key}")
                framing[key] = value
                continue
            if name == "HOST":
                if host_seen:
                    raise errors.DuplicateHeader("more than one Host header")
                host_seen = True
            headers.append((name, value.strip(" \t")))
        # one search over every header value; the precise one only on failure
        if BAD_VALUE_RE.search("".join([value for _, value in headers])):
            for name, value in headers:
                if BAD_VALUE_RE.search(value):
                    raise errors.InvalidHeader(f"control character in value of {name}")
        return headers, extensions

    def _build(
        self, variables: dict[str, str], headers: list[tuple[str, str]], framing: dict[str, str]
    ) -> UwsgiRequest:
        method = variables.get("REQUEST_METHOD")
        if not method:
            raise InvalidVar("no REQUEST_METHOD")
        if method not in _METHODS and METHOD_RE.fullmatch(method) is None:
            raise errors.InvalidMethod(f"invalid method {errors.excerpt(method)}")
        protocol = variables.get("SERVER_PROTOCOL")
        version = (1, 1) if protocol is None else _VERSIONS.get(protocol) or _version(protocol)
        uri, path, query = self._target(method, variables)
        # the body's framing: CONTENT_LENGTH (HTTP_CONTENT_LENGTH only without it)
        length_text = variables.get("CONTENT_LENGTH")
        header_length = framing.get("HTTP_CONTENT_LENGTH")
        if length_text is None:
            length_text = header_length or ""
        elif header_length is not None and header_length != length_text:
            raise errors.ConflictingFraming("CONTENT_LENGTH and Content-Length disagree")
        length = 0
        if length_text:
            if DIGITS_RE.fullmatch(length_text) is None:
                raise errors.InvalidContentLength(
                    f"invalid CONTENT_LENGTH {errors.excerpt(length_text)}"
                )
            length = int(length_text)
            headers.append(("CONTENT-LENGTH", length_text))
        elif "HTTP_TRANSFER_ENCODING" in framing:
            raise errors.InvalidTransferEncoding("Transfer-Encoding without CONTENT_LENGTH")
        content_type = variables.get("CONTENT_TYPE") or framing.get("HTTP_CONTENT_TYPE")
        if content_type:
            if BAD_VALUE_RE.search(content_type):
                raise errors.InvalidHeader("control character in CONTENT_TYPE")
            headers.append(("CONTENT-TYPE", content_type))
        for key in ("SERVER_PORT", "REMOTE_PORT"):
            port = variables.get(key)
            if port and not (len(port) <= 5 and port.isascii() and port.isdigit()):
                raise InvalidVar(f"invalid {key} {errors.excerpt(port)}")
            if port and int(port) > 65535:
                raise InvalidVar(f"invalid {key} {errors.excerpt(port)}")
        request = UwsgiRequest(
            method, uri, path, query, version, headers, variables, self._scheme(variables)
        )
        request.content_length = length
        for name, value in headers:
            if name == "HOST":
                if value not in GOOD_HOSTS:  # the HTTP parser's cache of valid Hosts
                    if HOST_RE.fullmatch(value) is None:
                        raise errors.InvalidHeader(f"invalid Host {errors.excerpt(value)}")
                    if len(GOOD_HOSTS) >= GOOD_HOSTS_MAX:
                        GOOD_HOSTS.clear()
                    GOOD_HOSTS.add(value)
                request.host = value
        return request

    def _target(self, method: str, variables: dict[str, str]) -> tuple[str, str, str]:
        """(uri, path, query): REQUEST_URI as sent by the client (under the HTTP parser's
        target rules), PATH_INFO (encoded) and QUERY_STRING, each falling back on the
        others when the proxy left it out."""
        uri = variables.get("REQUEST_URI")
        path_info = variables.get("PATH_INFO")
        query = variables.get("QUERY_STRING")
        if query is not None and TARGET_RE.fullmatch(query) is None and query:
            raise InvalidVar(f"invalid QUERY_STRING {errors.excerpt(query)}")
        if uri is not None:
            if len(uri) > self._limits.line_limit:
                raise errors.RequestLineTooLong(f"REQUEST_URI over {self._limits.line_limit} bytes")
            if TARGET_RE.fullmatch(uri) is None:
                raise errors.InvalidTarget(f"invalid REQUEST_URI {errors.excerpt(uri)}")
            if uri[0] == "/":
                uri_path, _, uri_query = uri.partition("?")
            else:  # asterisk- or absolute-form (nginx passes what the client sent)
                uri_path, uri_query, _ = split_other_form(method, uri)
            path = _quote_path(path_info) if path_info is not None else uri_path
            return uri, path, uri_query if query is None else query
        if path_info is None:
            raise InvalidVar("neither REQUEST_URI nor PATH_INFO")
        path = _quote_path(path_info)
        query = query or ""
        return (path + "?" + query if query else path), path, query

    @staticmethod
    def _scheme(variables: dict[str, str]) -> str:
        for key in ("UWSGI_SCHEME", "wsgi.url_scheme"):  # (gunicorn reads the second)
            scheme = variables.get(key)
            if scheme is not None:
                if scheme not in ("http", "https"):
                    raise InvalidVar(f"invalid {key} {errors.excerpt(scheme)}")
                return scheme
        if variables.get("HTTPS", "").lower() in ("on", "1"):
            return "https"
        return "https" if variables.get("REQUEST_SCHEME") == "https" else "http"
