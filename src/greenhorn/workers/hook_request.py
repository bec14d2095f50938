"""The request as server hooks see it: gunicorn's public attributes of a request.

Why it exists: ``pre_request(worker, req)`` and ``post_request(worker, req, environ, resp)``
hooks written for gunicorn read more of ``req`` than the parsed head (``http.parser.Request``:
``method``, ``uri``, ``path``, ``query``, ``fragment``, ``version``, ``headers``): also
``body`` (the body reader), ``trailers`` (chunked trailer fields, once the body was read),
``scheme`` (``https`` behind TLS or a trusted proxy's scheme header), ``peer_addr`` (the
socket's peer), ``remote_addr`` (the client, after a trusted PROXY header) and
``req_number`` (1 for the first request on a connection). Those belong to the connection,
not to the sans-IO head, so they live on this view, built only when a request hook is set:
a server without request hooks pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenhorn.config import HookRequest
    from greenhorn.http.parser import Request

__all__ = ["RequestView", "address"]

Address = tuple[str, int] | str


def address(host: str, port: str | int) -> Address:
    """``(host, port)`` as gunicorn hands out addresses; a UNIX socket's peer is ``""``."""
    if not host:
        return ""
    try:
        return host, int(port)
    except (TypeError, ValueError):
        return host, 0


class RequestView:
    """One request, for hooks: the head's attributes plus gunicorn's connection ones."""

    # __dict__: hooks written for gunicorn set their own attributes on the request in
    # pre_request and read them in post_request (``req.started = time.time()``)
    __slots__ = (
        "__dict__",
        "_req",
        "_trailers",
        "body",
        "peer_addr",
        "remote_addr",
        "req_number",
        "scheme",
    )

    def __init__(
        self,
        req: Request,
        *,
        body: object,
        scheme: str,
        peer_addr: Address,
        remote_addr: Address,
        req_number: int,
        trailers: Callable[[], list[tuple[str, str]]] | None = None,
    ) -> None:
        self._req = req
        self.body = body
        self.scheme = scheme
        self.peer_addr = peer_addr
        self.remote_addr = remote_addr
        self.req_number = req_number
        self._trailers = trailers

    @property
    def trailers(self) -> list[tuple[str, str]]:
        """Chunked trailer fields (UPPER names), once the body has been read; else []."""
        return self._trailers() if self._trailers is not None else []

    @property
    def method(self) -> str:
        return self._req.method

    @property
    def uri(self) -> str:
        return self._req.uri

    @property
    def path(self) -> str:
        return self._req.path

    @property
    def query(self) -> str:
        return self._req.query

    @property
    def fragment(self) -> str:
        return self._req.fragment

    @property
    def version(self) -> tuple[int, int]:
        return self._req.version

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._req.headers

    def __getattr__(self, name: str) -> object:  # the rest of the head (host, chunked...)
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._req, name)

    def __repr__(self) -> str:
        return repr(self._req)


if TYPE_CHECKING:  # what hooks are promised (config.HookRequest) is what this view is

    def _hooks_see_a_request(view: RequestView) -> HookRequest:
        return view
