"""The grammar of a listening address (``--bind``, ``metrics_bind``): THE one parser.

Why a module of its own, and why in config: an address is checked when the settings are
loaded (a malformed one is a usage error, exit 2, before anything starts) and parsed again
when the master binds it. Both must agree, so there is one grammar and both use it: the
converters in ``converters.py`` and the master's ``listeners.py``.

Forms (as gunicorn's ``--bind``): ``HOST:PORT``, ``:PORT`` (all IPv4 interfaces), ``HOST``
(port 8000), ``[IPV6]:PORT``, ``[IPV6]``, ``tcp://HOST:PORT``, ``unix:PATH``,
``unix://PATH``, ``fd://N``. Port 0 asks the kernel for a free port.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_PORT", "Address", "Kind", "parse_address"]

DEFAULT_PORT = 8000
_PORT_RE = re.compile(r"[0-9]{1,5}")
FD_RE = re.compile(r"[0-9]{1,9}")
_HOST_RE = re.compile(r"[A-Za-z0-9._-]+")  # a name or an IPv4 address (IPv6 goes in brackets)

Kind = Literal["tcp", "unix", "fd"]


@dataclass(frozen=True, slots=True)
class Address:
    """One parsed ``--bind`` value.

    ``kind`` is ``"tcp"`` (``host``/``port`` set), ``"unix"`` (``path`` set) or ``"fd"``
    (``fd`` set: an already open socket named by ``fd://N``).
    """

    kind: Kind
    host: str | None = None
    port: int | None = None
    path: str | None = None
    fd: int | None = None

    @property
    def is_ipv6(self) -> bool:
        """True for a TCP address whose host is an IPv6 literal."""
        return self.kind == "tcp" and self.host is not None and _is_ipv6_literal(self.host)

    def __str__(self) -> str:
        # gunicorn logs addresses as Python reprs of what it passes to bind(); keep that
        # shape so log scrapers written for gunicorn still match.
        if self.kind == "tcp":
            return str((self.host, self.port))
        if self.kind == "unix":
            return str(self.path)
        return f"fd://{self.fd}"


def _is_ipv6_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except (OSError, ValueError):
        return False
    return True


def _parse_port(text: str, bind: str) -> int:
    if not _PORT_RE.fullmatch(text):
        raise ValueError(f"invalid bind address {bind!r}: port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise ValueError(f"invalid bind address {bind!r}: port {port} is not in 0-65535")
    return port


def parse_address(bind: str) -> Address:
    """Parse one ``--bind`` value into an ``Address``; ``ValueError`` (one line) if malformed."""
    text = bind.strip()
    if not text:
        raise ValueError("invalid bind address '': empty")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):  # unix://path, as gunicorn accepts
            path = path[2:]
        if not path:
            raise ValueError(f"invalid bind address {bind!r}: empty socket path")
        if "\0" in path:
            raise ValueError(f"invalid bind address {bind!r}: NUL byte in socket path")
        return Address("unix", path=path)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not FD_RE.fullmatch(number):
            raise ValueError(f"invalid bind address {bind!r}: {number!r} is not a file descriptor")
        return Address("fd", fd=int(number))
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(
            f"invalid bind address {bind!r}: unsupported scheme {scheme!r} "
            "(use HOST:PORT, unix:PATH or fd://N)"
        )
    return _parse_tcp(text, bind)


def _parse_tcp(text: str, bind: str) -> Address:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid bind address {bind!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if not _is_ipv6_literal(host):
            raise ValueError(f"invalid bind address {bind!r}: {host!r} is not an IPv6 address")
        if not rest:
            return Address("tcp", host=host.lower(), port=DEFAULT_PORT)
        if not rest.startswith(":"):
            raise ValueError(f"invalid bind address {bind!r}: unexpected {rest!r} after ']'")
        return Address("tcp", host=host.lower(), port=_parse_port(rest[1:], bind))
    if "[" in text or "]" in text:
        raise ValueError(f"invalid bind address {bind!r}: misplaced bracket")
    if text.count(":") > 1:
        raise ValueError(
            f"invalid bind address {bind!r}: put IPv6 addresses in brackets, e.g. [::1]:8000"
        )
    host, sep, port_text = text.partition(":")
    port = _parse_port(port_text, bind) if sep else DEFAULT_PORT
    if host and not _HOST_RE.fullmatch(host):
        raise ValueError(f"invalid bind address {bind!r}: {host!r} is not a host name or address")
    return Address("tcp", host=host.lower() or "0.0.0.0", port=port)
