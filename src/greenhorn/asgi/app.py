"""Which ASGI an application speaks: ASGI 3 (one coroutine call) or ASGI 2 (a callable of the
scope returning a coroutine callable), and refusing what is neither (a WSGI callable).

Why a module of its own: the worker calls the application one way only, ``await app(scope,
receive, send)``; the detection and the ASGI 2 wrapper are decided once, when the worker
boots, and a WSGI application given to ``-k asgi`` by mistake becomes one clear line
instead of a ``TypeError`` on every request.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any, cast

__all__ = ["ASGIApp", "NotAnASGIApp", "Receive", "Scope", "Send", "as_asgi3"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class NotAnASGIApp(TypeError):
    """The object cannot be called as an ASGI application; ``str()`` says why, on one line."""


def _required_positional(func: Callable[..., object]) -> int | None:
    """How many positional parameters ``func`` needs (None when it cannot be told)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    count = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return None
        positional = param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD)
        if positional and param.default is param.empty:
            count += 1
    return count


def as_asgi3(app: object) -> ASGIApp:
    """``app`` as an ASGI 3 callable; ASGI 2 applications are wrapped.

    The rules, in order: a class is ASGI 2 (instantiated with the scope) unless its
    instances are awaitable; a coroutine function (or an object whose ``__call__`` is one)
    is ASGI 3; otherwise the number of parameters decides: three is ASGI 3 (a function
    returning an awaitable), one is ASGI 2, two is a WSGI application (refused).
    """
    if inspect.isclass(app):
        if hasattr(app, "__await__"):
            return cast(ASGIApp, app)
        return _wrap_asgi2(cast(Callable[[Scope], Any], app))
    if not callable(app):
        raise NotAnASGIApp(f"{app!r} is not callable")
    plain = inspect.isfunction(app) or inspect.ismethod(app) or isinstance(app, partial)
    call = app if plain else app.__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return cast(ASGIApp, app)
    needed = _required_positional(call)
    if needed == 2:
        raise NotAnASGIApp(
            "this looks like a WSGI application (it takes environ and start_response); "
            "-k asgi serves ASGI applications: use another worker type"
        )
    if needed == 1:
        return _wrap_asgi2(app)
    return cast(ASGIApp, app)


def _wrap_asgi2(app: Callable[[Scope], Callable[[Receive, Send], Awaitable[None]]]) -> ASGIApp:
    """An ASGI 3 callable around an ASGI 2 one (``app(scope)`` gives the coroutine
    callable of ``(receive, send)``)."""

    async def asgi2(scope: Scope, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi2.__qualname__ = f"asgi2({getattr(app, '__qualname__', app)!s})"
    return asgi2
