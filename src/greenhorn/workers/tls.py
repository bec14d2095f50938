"""TLS for the listeners: the server context from the settings, and the guarded handshake.

Why a module of its own: the master validates the TLS settings once before it opens its
sockets (so a bad certificate is one log line and exit status 1, not a crash in every
worker), each worker builds the same context after it forks, and every worker type performs
the handshake the same way. Both halves live here so there is one definition of "our TLS".

The context (``server_context``) is gunicorn's: ``ssl.create_default_context`` for client
authentication (so the system CAs are trusted for client certificates unless ``ca_certs``
is given, as in gunicorn), the certificate chain from ``certfile``/``keyfile``,
``cert_reqs`` as the verify mode and ``ciphers`` when set. The ``ssl_context(config,
default_ssl_context_factory)`` hook gets a factory that builds exactly that context and may
adjust it or return its own. ``ssl_version`` is deprecated (as in gunicorn): a non-default
value is ignored with one warning; set ``minimum_version`` in the hook instead.

The handshake (``handshake``) runs in the thread or greenlet that will serve the
connection, under the connection's header deadline, so a client that connects and never
finishes (or never starts) the handshake cannot hold a sync worker past ``header_timeout``:

1. Peek at the first bytes (``MSG_PEEK``, nothing consumed). A TLS connection starts with a
   handshake record (0x16). A request line such as ``GET / HTTP/1.1`` means a plain-HTTP
   client found the HTTPS port: it gets a plain-text ``400 Bad Request`` with
   ``Connection: close`` (what nginx does) instead of a TLS alert it cannot read.
2. Wrap server-side with ``do_handshake_on_connect=False`` and ``suppress_ragged_eofs`` from
   the settings, and handshake with the time left as the socket timeout (CPython applies it
   to the whole handshake; under gevent/eventlet it applies per wait, and a slow handshake
   only holds its own greenlet).
3. Any failure (timeout, a missing or untrusted client certificate with ``cert_reqs=2``, a
   protocol error) is one log line at info (debug for timeouts and silent disconnects); the
   socket is closed and ``None`` returned. The worker carries on.

PROXY protocol and TLS: a proxy that sends a PROXY header (``proxy_protocol``) sends it in
clear text *before* the TLS handshake (HAProxy ``send-proxy`` with ``ssl``). So when
``proxy_protocol`` is on, step 1 first reads an optional PROXY header from the raw socket
(only from ``proxy_allow_ips`` peers; malformed or untrusted headers are logged and the
connection closed, as for plain HTTP) and the returned socket carries it: read it with
``proxy_header(sock)``. Applying its addresses to the connection is the caller's job.

Renewed certificates (``Contexts``): gunicorn's sync and gthread workers call the
``ssl_context`` hook for every connection, so certificate files renewed in place (certbot,
cert-manager) serve the next connection without a HUP, at the price of reading and parsing
the key and certificate for every connection. Each worker here keeps its context and, per
new TLS connection, compares the ``stat()`` of ``certfile``, ``keyfile`` and ``ca_certs``
(inode, size, mtime) with what the context was built from; only a change builds a new one
(an incomplete renewal that does not load is logged once and the previous context kept).
A custom ``ssl_context`` hook is called for every connection, as gunicorn calls it, since
it may read files greenhorn does not know of; a hook that builds an expensive context
should keep it and rebuild only when its own files change. docs/deploy/index.md has the
measured costs.

``do_handshake_on_connect`` is accepted for compatibility but changes nothing visible: the
handshake always completes here, before the first request is read, whatever it says.
"""

from __future__ import annotations

import _ssl
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from greenhorn.config import hooks
from greenhorn.http import proxy
from greenhorn.http.fields import TOKEN_RE
from greenhorn.workers.proxy_gate import ProxyGate

if TYPE_CHECKING:
    from greenhorn.config import Config
    from greenhorn.observe.logger import Logger

__all__ = [
    "PLAIN_HTTP_BODY",
    "Contexts",
    "TLSConfigError",
    "handshake",
    "looks_like_http",
    "proxy_header",
    "server_context",
]

PLAIN_HTTP_BODY = b"plain HTTP request sent to an HTTPS port\n"
_PLAIN_HTTP_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % len(PLAIN_HTTP_BODY)
) + PLAIN_HTTP_BODY
_TLS_HANDSHAKE_RECORD = 0x16
_SNIFF_BYTES = 24  # enough for the longest method token we care about plus its space
_SNIFF_RETRY = 0.01  # seconds between peeks while the first bytes trickle in
_LINGER = 1.0  # seconds we wait for a refused plain-HTTP client to close after our answer
_TCHAR = frozenset(b for b in range(128) if TOKEN_RE.fullmatch(chr(b)))  # RFC 9110 tchar
_PROXY_PEEK = 16 + proxy.MAX_V2_LENGTH  # the longest PROXY header we accept
_PROXY_ATTR = "greenhorn_proxy_header"
_warned: set[str] = set()  # one deprecation warning per process (workers inherit the master's)


class TLSConfigError(Exception):
    """The TLS settings cannot produce a server context; ``str()`` is one line."""


# -- the context ------------------------------------------------------------------------------


def server_context(cfg: Config, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """The server-side ``SSLContext`` for ``cfg``, through the ``ssl_context`` hook.
    ``alpn``: the protocols the default context offers by ALPN, most preferred first (a
    worker that speaks HTTP/2: ``h2``, ``http/1.1``; a context the hook builds itself
    offers what the hook sets, as in gunicorn).

    Raises ``TLSConfigError`` (one-line message naming the setting) when a file is missing,
    unreadable or invalid, the cipher list selects nothing, or the hook fails.
    """
    if int(cfg.ssl_version) != int(ssl.PROTOCOL_TLS) and "ssl_version" not in _warned:
        _warned.add("ssl_version")
        logging.getLogger("greenhorn.error").warning(
            "ssl_version is deprecated and ignored; set minimum_version in an ssl_context "
            "hook instead"
        )
    for setting in ("certfile", "keyfile", "ca_certs"):
        _check_readable(setting, getattr(cfg, setting, None))

    def default_ssl_context_factory() -> ssl.SSLContext:
        context = _default_context(cfg)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context

    if getattr(cfg, "ssl_context", None) is None:
        return default_ssl_context_factory()
    try:
        context = hooks.call_hook(
            cfg, "ssl_context", cfg, default_ssl_context_factory, propagate=True
        )
    except TLSConfigError:
        raise
    except Exception as exc:
        raise TLSConfigError(
            f"ssl_context hook failed: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    if not isinstance(context, _ssl._SSLContext):
        raise TLSConfigError(
            f"ssl_context hook returned {type(context).__name__}, not an ssl.SSLContext"
        )
    return context  # type: ignore[return-value]  # an _SSLContext without ssl's own subclass


FileStamp = tuple[int, int, int, int] | None  # (device, inode, size, mtime_ns); None: missing


class Contexts:
    """A worker's server context for each new TLS connection, rebuilt when the certificate
    files change (or on every connection with a custom ``ssl_context`` hook): see the
    module docstring. ``build`` makes a context from the settings (``server_context``)."""

    def __init__(self, cfg: Config, log: Logger, build: Callable[[], ssl.SSLContext]) -> None:
        self.log = log
        self.build = build
        self.per_connection = not hooks.is_default(cfg, "ssl_context")
        self.files = tuple(str(f) for f in (cfg.certfile, cfg.keyfile, cfg.ca_certs) if f)
        self.stamps = self._stamps()
        self.context = build()
        self.refused: tuple[FileStamp, ...] | None = None  # stamps of files that did not load

    def _stamps(self) -> tuple[FileStamp, ...]:
        stamps: list[FileStamp] = []
        for path in self.files:
            try:
                st = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def current(self) -> ssl.SSLContext:
        """The context for a connection accepted now."""
        if self.per_connection:
            try:
                self.context = self.build()
            except TLSConfigError as exc:
                self.log.error("TLS: %s; new connections keep the previous context", exc)
            return self.context
        stamps = self._stamps()
        if stamps == self.stamps or stamps == self.refused:
            return self.context
        try:
            context = self.build()
        except TLSConfigError as exc:  # a renewal half written, a key that does not match
            self.refused = stamps
            self.log.error(
                "TLS certificate files changed but do not load (%s); new connections keep "
                "the previous certificate",
                exc,
            )
            return self.context
        self.context, self.stamps, self.refused = context, stamps, None
        self.log.info("TLS certificate files changed: new connections use them")
        return context


def _default_context(cfg: Config) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.ca_certs)
    except (OSError, ValueError) as exc:
        raise TLSConfigError(f"ca_certs {cfg.ca_certs!r}: {_ssl_reason(exc)}") from exc
    try:
        context.load_cert_chain(certfile=str(cfg.certfile), keyfile=cfg.keyfile)
    except (OSError, ValueError) as exc:
        which = f"certfile {cfg.certfile!r}"
        if cfg.keyfile:
            which += f" / keyfile {cfg.keyfile!r}"
        raise TLSConfigError(f"{which}: {_ssl_reason(exc)}") from exc
    context.verify_mode = ssl.VerifyMode(int(cfg.cert_reqs))
    if cfg.ciphers:
        try:
            context.set_ciphers(cfg.ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"ciphers {cfg.ciphers!r}: no cipher can be selected") from exc
    return context


def _check_readable(setting: str, path: str | None) -> None:
    if not path:
        return
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TLSConfigError(f"{setting} {path!r}: {exc.strerror or exc}") from exc


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None)
        if reason == "KEY_VALUES_MISMATCH":
            return "the private key does not match the certificate"
        if reason in (None, "PEM_LIB") or "PEM lib" in str(exc):
            return "not a valid PEM certificate or private key (or the key is missing)"
        return str(reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


# -- the handshake ----------------------------------------------------------------------------


def handshake(
    ctx: ssl.SSLContext, sock: socket.socket, deadline: float, cfg: Config, log: Logger
) -> ssl.SSLSocket | None:
    """Wrap ``sock`` server-side and complete the TLS handshake before ``deadline``
    (a ``time.monotonic()`` value). Returns the ``SSLSocket`` (its timeout left set) or
    ``None`` after logging and closing the connection. See the module docstring."""
    ip, peer = _peer(sock)
    ahead = _before_handshake(sock, deadline, cfg, log, ip, peer)
    if ahead is None:
        return None
    header, kind = ahead
    if kind == "closed":
        log.debug("TLS connection from %s closed before the handshake", peer)
        _close(sock)
        return None
    if kind == "http":
        log.info("Plain HTTP request from %s on an HTTPS port: answered 400", peer)
        _refuse_plain_http(sock, deadline)
        return None
    tls_sock = _wrap(ctx, sock, deadline, bool(cfg.suppress_ragged_eofs), log, peer)
    if tls_sock is not None and header is not None:
        setattr(tls_sock, _PROXY_ATTR, header)
    return tls_sock


def _before_handshake(
    sock: socket.socket, deadline: float, cfg: Config, log: Logger, ip: str, peer: str
) -> tuple[proxy.ProxyHeader | None, str] | None:
    """Steps 1 of the module docstring: the optional PROXY header, then what the client
    speaks ("tls", "http" or "closed"). None: the connection is closed (logged)."""
    header: proxy.ProxyHeader | None = None
    try:
        gate = ProxyGate(cfg.proxy_protocol, cfg.proxy_allow_ips, log)
        if gate.on:
            got = gate.read(ip, lambda seen: _peek_more(sock, seen, deadline))
            if got is None:  # malformed or untrusted (logged)
                _close(sock)
                return None
            header = got[0]
            if header is not None:
                _consume(sock, header.consumed, deadline)
        return header, _sniff(sock, deadline)
    except TimeoutError:
        log.debug("TLS handshake with %s timed out: no data", peer)
    except OSError as exc:
        log.debug("TLS connection from %s failed before the handshake: %s", peer, exc)
    _close(sock)
    return None


def _wrap(
    ctx: ssl.SSLContext,
    sock: socket.socket,
    deadline: float,
    suppress_ragged_eofs: bool,
    log: Logger,
    peer: str,
) -> ssl.SSLSocket | None:
    """Steps 2 and 3: wrap server-side and handshake with the time left; None (logged,
    closed) when it fails."""
    try:
        tls_sock = ctx.wrap_socket(
            sock,
            server_side=True,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=suppress_ragged_eofs,
        )
    except (OSError, ValueError) as exc:
        log.info("TLS setup for %s failed: %s", peer, _handshake_reason(exc))
        _close(sock)
        return None
    try:
        tls_sock.settimeout(_left(deadline))
        tls_sock.do_handshake()
    except TimeoutError:
        log.debug("TLS handshake with %s timed out", peer)
        _close(tls_sock)
        return None
    except (OSError, ValueError) as exc:
        log.info("TLS handshake with %s failed: %s", peer, _handshake_reason(exc))
        _close(tls_sock)
        return None
    return tls_sock


def proxy_header(sock: object) -> proxy.ProxyHeader | None:
    """The PROXY header ``handshake`` read before the TLS handshake on ``sock``, if any."""
    return getattr(sock, _PROXY_ATTR, None)


def looks_like_http(head: bytes) -> bool | None:
    """Whether the first bytes of a connection are an HTTP request line: True (a method
    token then a space), False (not HTTP), None (too few bytes to tell)."""
    for i, byte in enumerate(head):
        if byte == 0x20:
            return i > 0
        if byte not in _TCHAR:
            return False
    return None if len(head) < _SNIFF_BYTES else False


def _sniff(sock: socket.socket, deadline: float) -> str:
    """One of "tls", "http" or "closed", from bytes peeked at (never consumed) before ``deadline``.

    Raises ``TimeoutError`` when the deadline passes first.
    """
    while True:
        sock.settimeout(_left(deadline))
        head = sock.recv(_SNIFF_BYTES, socket.MSG_PEEK)
        if not head:
            return "closed"
        if head[0] == _TLS_HANDSHAKE_RECORD:
            return "tls"
        verdict = looks_like_http(head)
        if verdict is not None:
            return "http" if verdict else "tls"  # not HTTP: let the handshake refuse it
        # A method token without its space yet: peeking again at once would return the same
        # bytes, so wait a little for more (time.sleep is cooperative under gevent/eventlet).
        time.sleep(min(_SNIFF_RETRY, max(0.0, deadline - time.monotonic())))


def _peek_more(sock: socket.socket, seen: bytes, deadline: float) -> bytes:
    """What the raw socket holds now, at least ``seen`` (peeked: nothing is consumed, the
    TLS handshake after a PROXY header stays in the socket). OSError when it closed."""
    sock.settimeout(_left(deadline))
    data = sock.recv(_PROXY_PEEK, socket.MSG_PEEK)
    if not data:
        raise OSError("connection closed before the PROXY header")
    if len(data) == len(seen):  # a partial header: wait for the rest to trickle in
        time.sleep(min(_SNIFF_RETRY, max(0.0, deadline - time.monotonic())))
    return data


def _consume(sock: socket.socket, size: int, deadline: float) -> None:
    """Receive exactly ``size`` bytes (the PROXY header that was peeked)."""
    left = size
    while left:
        sock.settimeout(_left(deadline))
        chunk = sock.recv(left)
        if not chunk:
            raise OSError("connection closed inside the PROXY header")
        left -= len(chunk)


def _refuse_plain_http(sock: socket.socket, deadline: float) -> None:
    """Answer the plain-HTTP 400, then close without resetting the connection."""
    try:
        sock.settimeout(max(0.1, min(_LINGER, deadline - time.monotonic())))
        sock.recv(65536)  # consume what we peeked, so closing does not send RST
        sock.sendall(_PLAIN_HTTP_RESPONSE)
        sock.shutdown(socket.SHUT_WR)
        until = time.monotonic() + _LINGER
        seen = 0
        while seen < 65536 and time.monotonic() < until:
            sock.settimeout(max(0.01, until - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                break
            seen += len(data)
    except OSError:
        pass
    _close(sock)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _peer(sock: socket.socket) -> tuple[str, str]:
    """(address, label for log lines) of the client."""
    try:
        addr = sock.getpeername()
    except OSError:
        return "", "unknown"
    if isinstance(addr, tuple):
        return str(addr[0]), f"{addr[0]}:{addr[1]}"
    return "", str(addr) or "unix"


def _handshake_reason(exc: BaseException) -> str:
    message = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
    if message:
        return str(message)
    return _one_line(exc)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
