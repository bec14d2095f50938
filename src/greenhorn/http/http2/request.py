"""An HTTP/2 request's header list → ``http.parser.Request``, under RFC 9113 §8's rules and
the HTTP/1.1 limits.

Why here and not in the h2 library: h2's own header validation is switched off (it costs a
third of h2's time per request and knows nothing of the server's limits); these rules are
the server's, so they live next to the HTTP/1.1 parser's and give the same ``Request``, the
same errors and the same limits. A request that breaks a wire rule is *malformed*
(``Malformed``: the stream is reset with PROTOCOL_ERROR, RFC 9113 §8.1.1); one that only
exceeds a limit gets the status HTTP/1.1 would answer (431, 414, 413, 417, 501).

The rules, in the order a field list is read:

- pseudo-header fields (``:method``, ``:scheme``, ``:authority``, ``:path``) come first,
  once each, and no others (``:status``, ``:protocol``, unknown ones) are allowed;
  ``:method``, ``:scheme`` and ``:path`` are required; ``:path`` is an origin-form target
  (or ``*`` for OPTIONS) with the HTTP/1.1 target's bytes; ``:authority`` has no userinfo;
  CONNECT is refused as in HTTP/1.1 (501: no tunnels);
- field names are lower-case tokens; values hold no NUL, CR, LF or other CTL and do not
  start or end with whitespace;
- connection-specific fields (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
  Upgrade) are malformed, and TE may only say ``trailers``;
- a Host field that names another authority than ``:authority`` is malformed; without
  ``:authority`` the Host field is the authority; with it, ``HOST`` in the header list is
  ``:authority``'s value (what an HTTP/1.1 client would have sent);
- Cookie crumbs (one field per cookie, §8.2.3) are joined with ``; `` and count as one
  field; Content-Length must be digits, once; Expect may only say ``100-continue``;
- names with ``_`` follow ``header_map`` and ``forwarder_headers``, as in HTTP/1.1;
- at most ``limit_request_fields`` fields (431), each ``name: value`` at most
  ``limit_request_field_size`` (431), ``:path`` at most ``limit_request_line`` (414).

Speed: clients repeat the same fields on every request, so a validated ordinary field is
remembered by its (name, value) bytes in a bounded cache and the next request pays one
dict lookup for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from greenhorn.http import errors
from greenhorn.http.fields import TCHAR
from greenhorn.http.limits import Limits
from greenhorn.http.parser import METHOD_RE, STRICT_METHOD_RE, Request
from greenhorn.http.target import HOST_RE, TARGET_RE

__all__ = ["Malformed", "build_request", "check_trailers"]

Field = tuple[bytes, bytes]

VERSION = (2, 0)
_NAME_RE = re.compile(f"[{TCHAR.replace('A-Za-z', 'a-z')}]+".encode())
_BAD_VALUE_RE = re.compile(rb"[^\t\x20-\x7e\x80-\xff]")
_SCHEME_RE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*")
_WS = (b" ", b"\t")
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
# Fields the request builder looks at: never served from the cache.
_SPECIAL = CONNECTION_SPECIFIC | {
    b"host",
    b"cookie",
    b"content-length",
    b"content-type",
    b"expect",
    b"te",
}
_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path"))
# Trailer fields that would change how the message is framed, routed or authenticated
# (RFC 9110 §6.5.1): refused in request trailers.
FORBIDDEN_TRAILERS = frozenset(
    (
        b"content-length",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"host",
        b"authorization",
        b"cookie",
        b"expect",
        b"te",
        b"trailer",
    )
)

_PAIRS: dict[Field, tuple[str, str]] = {}  # ordinary validated fields -> (UPPER name, value)
_PAIRS_MAX = 2048
_PAIR_LINE = 256  # longer fields are validated every time, not remembered
_METHODS: dict[bytes, str] = {}  # :method values seen valid (strict rules)
_PATHS: dict[bytes, tuple[str, str, str]] = {}  # :path -> (uri, path, query)
_PATHS_MAX = 1024
_AUTHORITIES: dict[bytes, str] = {}
_AUTHORITIES_MAX = 256


class Malformed(errors.HTTPError):
    """A request that breaks a rule of RFC 9113 §8 (the stream is reset, PROTOCOL_ERROR)."""


def build_request(fields: Iterable[Field], limits: Limits) -> tuple[Request, bytes]:
    """The ``Request`` for a HEADERS block's fields, and the ``:scheme`` it claims.

    ``Request.content_length`` is the declared Content-Length, or None (the body is then
    delimited by END_STREAM). Raises ``Malformed`` or another ``errors.HTTPError``.
    """
    method = scheme = authority = path = None
    host: bytes | None = None
    headers: list[tuple[str, str]] = []
    cookies: list[str] | None = None
    forwarded: list[tuple[str, str]] | None = None
    content_length: int | None = None
    expect_continue = False
    content_type = False
    count = 0
    pseudo_open = True
    cache = _PAIRS
    field_limit = limits.field_limit
    for field in fields:
        pair = cache.get(field)
        if pair is not None:
            pseudo_open = False
            headers.append(pair)
            count += 1
            continue
        name, value = field
        if name[:1] == b":":
            if not pseudo_open:
                raise Malformed("pseudo-header field after a regular field")
            if name == b":method":
                if method is not None:
                    raise Malformed("two :method fields")
                method = value
            elif name == b":path":
                if path is not None:
                    raise Malformed("two :path fields")
                path = value
            elif name == b":scheme":
                if scheme is not None:
                    raise Malformed("two :scheme fields")
                scheme = value
            elif name == b":authority":
                if authority is not None:
                    raise Malformed("two :authority fields")
                authority = value
            else:
                raise Malformed(f"pseudo-header field {errors.excerpt(name)} in a request")
            continue
        pseudo_open = False
        if _NAME_RE.fullmatch(name) is None:
            if name.lower() != name or not name:
                raise Malformed(f"field name {errors.excerpt(name)} is not lower case")
            raise Malformed(f"invalid field name {errors.excerpt(name)}")
        if _BAD_VALUE_RE.search(value) or value[:1] in _WS or value[-1:] in _WS:
            raise Malformed(f"invalid value for field {errors.excerpt(name)}")
        if len(name) + len(value) + 2 > field_limit:
            raise errors.HeaderFieldTooLarge(
                f"header field over {field_limit + 2} bytes with its CRLF"
            )
        text = value.decode("latin-1")
        if name in _SPECIAL:
            if name in CONNECTION_SPECIFIC:
                raise Malformed(f"connection-specific field {name.decode()}")
            if name == b"cookie":
                if cookies is None:
                    cookies = [text]
                    count += 1
                else:
                    cookies.append(text)
                continue
            if name == b"host":
                if host is not None:
                    raise Malformed("more than one Host field")
                host = value
            elif name == b"te":
                if value.lower() != b"trailers":
                    raise Malformed("TE other than trailers")
            elif name == b"content-length":
                if content_length is not None:
                    raise errors.DuplicateHeader("more than one Content-Length field")
                if not value.isdigit() or len(value) > 18:
                    raise errors.InvalidContentLength(
                        f"invalid Content-Length {errors.excerpt(value)}"
                    )
                content_length = int(value)
            elif name == b"content-type":
                if content_type:
                    raise errors.DuplicateHeader("more than one Content-Type header")
                content_type = True
            elif name == b"expect":
                members = [m.strip(b" \t").lower() for m in value.split(b",")]
                for member in members:
                    if member and member != b"100-continue":
                        raise errors.ExpectationFailed(
                            f"unsupported expectation {errors.excerpt(member)}"
                        )
                expect_continue = b"100-continue" in members
            upper = name.decode("latin-1").upper()
        else:
            upper = name.decode("latin-1").upper()
            if "_" in upper:
                if upper in limits.forwarders or "*" in limits.forwarders:
                    if forwarded is None:
                        forwarded = []
                    forwarded.append((upper, text))
                    continue
                if limits.header_map == "drop":
                    continue
                if limits.header_map == "refuse":
                    raise errors.InvalidHeaderName(f"underscore in header name {upper}")
            elif len(name) + len(value) <= _PAIR_LINE:
                if len(cache) >= _PAIRS_MAX:
                    cache.clear()
                cache[field] = (upper, text)
        headers.append((upper, text))
        count += 1
    if count > limits.fields_limit:
        raise errors.TooManyHeaders(f"more than {limits.fields_limit} header fields")
    if cookies is not None:
        headers.append(("COOKIE", "; ".join(cookies)))
    if method is None:
        raise Malformed("no :method field")
    method_text = _method(method, limits)
    if method_text == "CONNECT":
        raise errors.UnsupportedMethod("CONNECT: this server opens no tunnels")
    if scheme is None or path is None:
        raise Malformed("no :scheme or no :path field")
    if _SCHEME_RE.fullmatch(scheme) is None:
        raise Malformed(f"invalid :scheme {errors.excerpt(scheme)}")
    uri, path_text, query = _target(path, method_text, limits)
    req = Request(method_text, uri, path_text, query, "", VERSION, headers)
    if authority is not None:
        authority_text = _authority(authority)
        if host is not None and host.lower() != authority.lower():
            raise Malformed("Host differs from :authority")
        req.host = authority_text
        if host is None:
            headers.append(("HOST", authority_text))
    elif host is not None:
        host_text = host.decode("latin-1")
        if HOST_RE.fullmatch(host_text) is None or "@" in host_text:
            raise errors.InvalidHeader(f"invalid Host {errors.excerpt(host)}")
        req.host = host_text
    req.content_length = content_length
    req.expect_continue = expect_continue
    req.forwarded = forwarded
    return req, scheme


def _method(value: bytes, limits: Limits) -> str:
    known = _METHODS.get(value)
    if known is not None and not limits.casefold_http_method:
        return known
    text = value.decode("latin-1")
    if limits.casefold_http_method:
        text = text.upper()
    strict = not limits.permit_unconventional_http_method
    if (STRICT_METHOD_RE if strict else METHOD_RE).fullmatch(text) is None:
        raise errors.InvalidMethod(f"invalid method {errors.excerpt(value)}")
    if strict and not limits.casefold_http_method and len(_METHODS) < 64:
        _METHODS[value] = text
    return text


def _target(value: bytes, method: str, limits: Limits) -> tuple[str, str, str]:
    known = _PATHS.get(value)
    if known is not None:
        if len(value) > limits.line_limit:
            raise errors.RequestLineTooLong(f":path over {limits.line_limit} bytes")
        return known
    if not value:
        raise Malformed("empty :path")
    if len(value) > limits.line_limit:
        raise errors.RequestLineTooLong(f":path over {limits.line_limit} bytes")
    uri = value.decode("latin-1")
    if TARGET_RE.fullmatch(uri) is None:
        raise errors.InvalidTarget(f"invalid :path {errors.excerpt(value)}")
    if uri == "*":
        if method != "OPTIONS":
            raise Malformed(":path * is only allowed with OPTIONS")
        return uri, "*", ""
    if uri[0] != "/":
        raise Malformed(f":path {errors.excerpt(value)} does not start with /")
    path, _, query = uri.partition("?")
    result = (uri, path, query)
    if len(value) <= _PAIR_LINE:
        if len(_PATHS) >= _PATHS_MAX:
            _PATHS.clear()
        _PATHS[value] = result
    return result


def _authority(value: bytes) -> str:
    known = _AUTHORITIES.get(value)
    if known is not None:
        return known
    text = value.decode("latin-1")
    if not text or HOST_RE.fullmatch(text) is None:
        raise Malformed(f"invalid :authority {errors.excerpt(value)}")
    if "@" in text:
        raise Malformed("userinfo in :authority")
    if len(_AUTHORITIES) >= _AUTHORITIES_MAX:
        _AUTHORITIES.clear()
    _AUTHORITIES[value] = text
    return text


def check_trailers(fields: Iterable[Field], limits: Limits) -> list[tuple[str, str]]:
    """A request's trailer fields (a second HEADERS block), as ``(UPPER name, value)``;
    ``Malformed`` for pseudo-header fields, bad names or values, and fields that may not
    be trailers (RFC 9110 §6.5.1)."""
    out: list[tuple[str, str]] = []
    for name, value in fields:
        if name[:1] == b":":
            raise Malformed("pseudo-header field in trailers")
        if _NAME_RE.fullmatch(name) is None:
            raise Malformed(f"invalid trailer name {errors.excerpt(name)}")
        if _BAD_VALUE_RE.search(value) or value[:1] in _WS or value[-1:] in _WS:
            raise Malformed(f"invalid value for trailer {errors.excerpt(name)}")
        if name in CONNECTION_SPECIFIC or name in FORBIDDEN_TRAILERS:
            raise Malformed(f"{name.decode()} is not allowed in trailers")
        if len(name) + len(value) + 2 > limits.field_limit:
            raise errors.HeaderFieldTooLarge("trailer field too large")
        out.append((name.decode("latin-1").upper(), value.decode("latin-1")))
        if len(out) > limits.fields_limit:
            raise errors.TooManyHeaders(f"more than {limits.fields_limit} trailer fields")
    return out
