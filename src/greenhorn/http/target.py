"""The request-target (RFC 9112 §3.2): the bytes it may hold, its four forms, and the
absolute-form authority against the Host header.

Why a module of its own: which targets reach the application is a security boundary of
its own (path traversal through ``\\``, host confusion through absolute-form, a tunnel
through CONNECT), with rules that change for reasons the rest of the head parser does not
share. ``parser`` matches the request line and hands the target here when it is not the
common origin-form (``/path?query``, split in place there for speed).

Rules:

- Bytes: visible ASCII only. Raw non-ASCII must be percent-encoded (RFC 9112 §3.2,
  RFC 3986 §2.1: ``/café`` in UTF-8 and overlong sequences like ``\\xc0\\xaf`` are refused);
  ``#`` never (a client does not send a fragment); ``\\`` never (outside the URI grammar,
  and read as ``/`` by some proxies and file systems). The other characters RFC 3986 does
  not list (``" < > [ ] { } | ^ ```) stay accepted: browsers leave them unencoded in a query.
- asterisk-form only with OPTIONS; authority-form only with CONNECT, which is then refused
  with 501: a WSGI server has no tunnel to open.
- absolute-form: ``http`` or ``https``, a non-empty authority without userinfo (RFC 9110
  §4.2.4). Its authority replaces Host (RFC 9112 §3.2.2); a Host that names another host or
  port is refused (400) rather than ignored, so that a proxy in front routing on Host and
  the application reading the target cannot disagree on where the request goes.
"""

from __future__ import annotations

import re

from greenhorn.http import errors

__all__ = ["HOST_RE", "TARGET", "TARGET_RE", "check_authority", "split_other_form"]

TARGET = r"[\x21\x22\x24-\x5b\x5d-\x7e]++"  # visible ASCII but "#" and "\"
TARGET_RE = re.compile(TARGET)
ABSOLUTE_RE = re.compile(r"[Hh][Tt][Tt][Pp]([Ss]?)://([^/?]*)(.*)", re.DOTALL)
AUTHORITY_RE = re.compile(r"[A-Za-z0-9.\-_~!$&'()*+,;=%]+:[0-9]+|\[[0-9A-Fa-f:.]+\]:[0-9]+")
HOST_RE = re.compile(r"[A-Za-z0-9.\-_~!$&'()*+,;=:%\[\]]+")  # never empty (RFC 9110 §4.2.1)


def split_other_form(method: str, uri: str) -> tuple[str, str, str | None]:
    """An asterisk-, authority- or absolute-form target (``uri``, already known to hold only
    allowed bytes) → (path, query, the absolute-form authority or None). Raises."""
    if uri == "*":
        if method != "OPTIONS":
            raise errors.InvalidTarget("asterisk-form is only allowed with OPTIONS")
        return "*", "", None
    if method == "CONNECT":
        if AUTHORITY_RE.fullmatch(uri) is None:
            raise errors.InvalidTarget("CONNECT needs host:port")
        raise errors.UnsupportedMethod("CONNECT: this server opens no tunnels")
    m = ABSOLUTE_RE.fullmatch(uri)
    if m is None or not m.group(2):
        raise errors.InvalidTarget(f"invalid request target {errors.excerpt(uri)}")
    authority = m.group(2)
    if "@" in authority:
        raise errors.InvalidTarget("userinfo in the request target")
    if HOST_RE.fullmatch(authority) is None:
        raise errors.InvalidTarget(f"invalid authority {errors.excerpt(authority)}")
    rest = m.group(3)
    if not rest.startswith("/"):
        rest = "/" + rest
    path, _, query = rest.partition("?")
    return path, query, authority


def check_authority(host: str | None, authority: str, uri: str) -> None:
    """Raise ``HostMismatch`` unless the Host value (None: no Host field) names the same
    host and port as the absolute-form ``uri``'s ``authority`` (case and the scheme's
    default port aside)."""
    if host is not None and host != authority:
        port = ":443" if uri[4] in "sS" else ":80"
        if _origin(host, port) != _origin(authority, port):
            raise errors.HostMismatch(
                f"Host {errors.excerpt(host)} is not the target's {errors.excerpt(authority)}"
            )


def _origin(authority: str, default_port: str) -> str:
    """``authority`` lowercased, without the scheme's default port or an empty one."""
    authority = authority.lower()
    if authority.endswith(default_port):
        return authority[: -len(default_port)]
    return authority[:-1] if authority.endswith(":") else authority
