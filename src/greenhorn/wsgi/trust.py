"""Peer trust: which client addresses may speak for others.

Why a module of its own: two settings name trusted peers, ``forwarded_allow_ips`` (who may
set the URL scheme, SCRIPT_NAME and the other forwarder headers) and ``proxy_allow_ips``
(who may send a PROXY protocol header), and both are answered the same way: an allowed IP
or network, ``*``, or a UNIX-socket peer.
"""

from __future__ import annotations

import ipaddress

__all__ = ["ProxyTrust"]

_SEEN_MAX = 256


class ProxyTrust:
    """Which peers may set the URL scheme through headers (``forwarded_allow_ips``)."""

    __slots__ = ("_seen", "any", "headers", "keys", "networks")

    def __init__(self, allow: list[str], secure_scheme_headers: dict[str, str]) -> None:
        self.any = "*" in allow
        self.networks = []
        for item in allow:
            if item != "*":
                try:
                    self.networks.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError:
                    continue
        # header NAME (as parsed: UPPER) -> expected value (lowercase) meaning "https"
        self.headers = {k.upper(): v.lower() for k, v in secure_scheme_headers.items()}
        # their environ keys: a request that has none of them skips the scheme check
        self.keys = tuple("HTTP_" + k.replace("-", "_") for k in self.headers)
        # answers given so far, by address: a proxy connects from the same few addresses
        # on every request, and parsing one costs more than the rest of the check (bounded)
        self._seen: dict[str, bool] = {}

    def trusts(self, addr: str) -> bool:
        """True for an allowed IP, for ``*``, and for UNIX-socket peers (``addr`` empty):
        only local processes can reach a UNIX socket, so gunicorn trusts them too."""
        if self.any or not addr:
            return True
        if not self.networks:
            return False
        seen = self._seen.get(addr)
        if seen is not None:
            return seen
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            trusted = False
        else:
            trusted = any(ip in net for net in self.networks)
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[addr] = trusted
        return trusted
