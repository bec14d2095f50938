"""The PROXY protocol in front of a connection: THE one reader, for plain and TLS sockets.

Why a module of its own: a proxy that speaks the PROXY protocol (``proxy_protocol``) sends
its header before anything else: before the request on a plain connection, before the TLS
handshake on an HTTPS one. Both are read by ``ProxyGate.read``: ``http/proxy.py`` parses the
bytes, the gate decides (only ``proxy_allow_ips`` peers may send one) and logs. Only how
the bytes arrive differs, so the caller passes ``more``: the handler receives (the bytes
after the header go to the parser), TLS peeks (exactly the header is then consumed, the
handshake stays in the socket).

A malformed header, or one from an untrusted peer, is logged and the connection closed
(never answered: the peer is not an HTTP client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from greenhorn.http import errors, proxy
from greenhorn.http.parser import NEED_DATA
from greenhorn.wsgi.trust import ProxyTrust

if TYPE_CHECKING:
    from greenhorn.observe.logger import Logger

__all__ = ["ProxyGate"]

# ``more(seen)``: the bytes received so far (``seen``, maybe with more; it may wait for
# them), or None when the peer closed.
More = Callable[[bytes], "bytes | None"]


class ProxyGate:
    """``proxy_protocol`` and ``proxy_allow_ips`` for one worker."""

    def __init__(self, setting: object, allow: Sequence[str], log: Logger) -> None:
        self.mode = proxy.mode_from_setting(setting)
        self.on = self.mode != "off"  # an attribute, not a property: read on every connection
        self.trust = ProxyTrust(list(allow), {})
        self.log = log

    def read(self, peer: str, more: More) -> tuple[proxy.ProxyHeader | None, bytes] | None:
        """Read an optional header from ``peer``: ``(header or None, every byte seen)``;
        None when the connection must close (logged, unless the peer simply closed).
        Timeouts and ``OSError`` from ``more`` pass through."""
        data = b""
        while True:
            try:
                result = proxy.parse(data, self.mode)
            except errors.InvalidProxyHeader as exc:
                self.log.warning("Invalid PROXY header from ip=%s: %s", peer, exc)
                return None
            if result is not NEED_DATA:
                break
            grown = more(data)
            if grown is None:
                return None
            data = grown
        if result is None:  # plain traffic: the header is optional
            return None, data
        assert isinstance(result, proxy.ProxyHeader)
        if not self.trust.trusts(peer):
            self.log.warning("PROXY header from untrusted ip=%s refused", peer)
            return None
        return result, data
