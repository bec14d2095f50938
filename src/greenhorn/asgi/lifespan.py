"""The ASGI lifespan protocol: the application's startup before the worker serves, and
its shutdown when the worker stops (``asgi_lifespan``: auto, on, off).

Why a module of its own: it is a small conversation with its own failure rules, run once
per worker around the whole serving life, and the worker only needs two answers: did
startup succeed (else stop the server: no respawn loop), and is shutdown done.

Rules (gunicorn's and uvicorn's):

- ``on``: any failure to complete startup (the application sends
  ``lifespan.startup.failed``, raises, returns, or does not answer in ``startup_timeout``)
  fails the boot.
- ``auto``: an application that raises or returns before answering does not speak
  lifespan: the worker serves without it (logged at debug level); one that answers
  ``lifespan.startup.failed`` or does not answer in time still fails the boot.
- ``state`` is the dict the application may fill during startup (the lifespan state
  extension); each request's scope gets a shallow copy of it.
- Shutdown waits for ``lifespan.shutdown.complete`` (or ``failed``, logged) up to its
  timeout; an application that has already returned is not asked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from greenhorn.asgi.app import ASGIApp, Message
from greenhorn.asgi.scope import ASGI_VERSION

if TYPE_CHECKING:
    from greenhorn.observe.logger import Logger

__all__ = ["Lifespan", "StartupFailed"]


class StartupFailed(Exception):
    """Startup did not complete; ``str()`` says why on one line."""


class Lifespan:
    """One run of the lifespan protocol for one worker. Use ``startup`` then ``shutdown``."""

    def __init__(self, app: ASGIApp, mode: str, log: Logger) -> None:
        self.app = app
        self.mode = mode
        self.log = log
        self.state: dict[str, Any] = {}
        self.supported = False  # startup completed: shutdown will be sent
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answer: asyncio.Future[tuple[str, str]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._returned = False

    async def startup(self, timeout: float | None) -> None:
        """Run startup; raise ``StartupFailed`` when the server must not serve."""
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self._task = loop.create_task(self._run(scope))
        self._queue.put_nowait({"type": "lifespan.startup"})
        try:
            kind, message = await asyncio.wait_for(asyncio.shield(self._answer), timeout)
        except TimeoutError:
            self._task.cancel()
            raise StartupFailed(f"lifespan startup did not complete within {timeout:g}s")
        if kind == "complete":
            self.supported = True
            self.log.debug("ASGI lifespan startup complete")
            return
        if kind == "failed":
            raise StartupFailed(
                f"lifespan startup failed: {message}" if message else "lifespan startup failed"
            )
        # the application raised or returned without answering
        if self.mode == "on":
            raise StartupFailed(f"lifespan startup did not complete: {message}")
        self.log.debug("ASGI lifespan not supported by the application (%s)", message)

    async def shutdown(self, timeout: float | None) -> None:
        """Send ``lifespan.shutdown`` and wait for the answer (bounded); never raises."""
        if not self.supported or self._returned or self._task is None:
            return
        loop = asyncio.get_running_loop()
        self._answer = loop.create_future()
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        try:
            kind, message = await asyncio.wait_for(asyncio.shield(self._answer), timeout)
        except TimeoutError:
            self.log.warning("ASGI lifespan shutdown did not complete within %gs", timeout)
            self._task.cancel()
            return
        if kind == "failed":
            self.log.error("ASGI lifespan shutdown failed: %s", message)
        elif kind != "complete":
            self.log.error("ASGI lifespan shutdown did not complete: %s", message)
        else:
            self.log.debug("ASGI lifespan shutdown complete")

    def _reply(self, kind: str, message: str) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result((kind, message))

    async def _run(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self.supported:  # a crash during shutdown (or while serving)
                self.log.error("ASGI lifespan task raised: %r", exc)
            elif self.mode == "on":
                self.log.error("ASGI lifespan startup raised", exc_info=exc)
            self._reply("raised", f"{type(exc).__name__}: {exc}")
        else:
            self._reply("returned", "the application returned")
        finally:
            self._returned = True

    async def _receive(self) -> dict[str, Any]:
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type") if hasattr(message, "get") else None
        if kind == "lifespan.startup.complete":
            self._reply("complete", "")
        elif kind == "lifespan.startup.failed":
            self._reply("failed", str(message.get("message", "")))
        elif kind == "lifespan.shutdown.complete":
            self._reply("complete", "")
        elif kind == "lifespan.shutdown.failed":
            self._reply("failed", str(message.get("message", "")))
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
