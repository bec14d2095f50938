"""``--reuse-port``: each worker's own listening socket (SO_REUSEPORT), beside the shared one.

Why: with ``reuse_port``, gunicorn's workers each bind a socket of their own to the
address, so the kernel spreads new connections over the workers' accept queues by a hash
of each connection, instead of handing them to whichever worker waits on the one shared
queue. A worker here does the same as it boots (before it drops privileges, so that a
privileged port binds as it did for the master), and also keeps the master's socket, which
the kernel counts as one more member of the group: any idle worker accepts from it, and it
keeps the address answering while a worker restarts (gunicorn's master holds no socket
then, so the restart of a lone worker refuses connections).

What SO_REUSEPORT costs, whoever uses it: a connection already queued on a worker's own
socket when that worker stops is reset by the kernel (Linux can move them to a sibling
with ``net.ipv4.tcp_migrate_req = 1``), and a worker busy with a slow request still gets
its share of new connections, which wait behind it. docs/deploy/index.md has the measured
spread.

Only a TCP listener the master bound with SO_REUSEPORT gets a sibling; a UNIX socket stays
shared, and so does a socket from systemd or ``fd://`` opened without SO_REUSEPORT (one
warning line).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from greenhorn.config.addresses import Address
    from greenhorn.observe.logger import Logger

__all__ = ["OwnListener", "own_listeners"]


class Shared(Protocol):
    """A listener the master opened (``base.Listening``, as far as this module needs)."""

    @property
    def sock(self) -> socket.socket: ...

    @property
    def address(self) -> Address: ...


class OwnListener:
    """A worker's own listening socket (a ``base.Listening``)."""

    __slots__ = ("address", "sock")

    def __init__(self, sock: socket.socket, address: Address) -> None:
        self.sock = sock
        self.address = address

    @property
    def port(self) -> int | None:
        return self.address.port if self.address.kind == "tcp" else None


def own_listeners(shared: Sequence[Shared], backlog: int, log: Logger) -> list[OwnListener]:
    """A socket of this worker's own, bound where each shared TCP listener is."""
    option = getattr(socket, "SO_REUSEPORT", None)
    own: list[OwnListener] = []
    for listener in shared:
        sock = listener.sock
        if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            name = sock.getsockname()
            if not sock.getsockopt(socket.SOL_SOCKET, option):
                log.warning(
                    "reuse_port: %s was opened without SO_REUSEPORT (systemd or fd://?): "
                    "this worker accepts from it only",
                    _shown(name),
                )
                continue
        except OSError:
            continue
        mine = socket.socket(sock.family, socket.SOCK_STREAM)
        try:
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            mine.setsockopt(socket.SOL_SOCKET, option, 1)
            if sock.family == socket.AF_INET6:
                v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
                mine.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            mine.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mine.bind(name)
            mine.listen(backlog)
            mine.setblocking(False)
        except OSError as exc:
            mine.close()
            log.warning(
                "reuse_port: cannot open this worker's own socket at %s (%s): it accepts "
                "from the shared one only",
                _shown(name),
                exc.strerror or exc,
            )
            continue
        own.append(OwnListener(mine, listener.address))
    return own


def _shown(name: object) -> str:
    if isinstance(name, tuple) and len(name) >= 2:
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(name)
