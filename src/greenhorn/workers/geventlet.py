"""The eventlet worker (``-k eventlet``, needs eventlet installed).

eventlet is in maintenance mode upstream (gunicorn dropped its worker in 26.0); greenhorn
keeps one for applications that still depend on it. Monkey-patching happens in ``setup()``
in the master, before the application is imported; the loop is shared with gevent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.hubs
    from eventlet import greenpool

from greenhorn.workers.base import Worker
from greenhorn.workers.green import GreenPool, run_green

if TYPE_CHECKING:
    from greenhorn.config import Config

__all__ = ["EventletWorker"]


class _Pool:
    """GreenPool with the two calls the shared loop uses."""

    def __init__(self, size: int) -> None:
        self._pool = greenpool.GreenPool(size)

    def spawn(self, fn: Callable[..., object], *args: object) -> object:
        return self._pool.spawn(fn, *args)

    def free_count(self) -> int:
        return int(self._pool.free())

    def wait_available(self) -> None:
        while self._pool.free() <= 0:
            eventlet.sleep(0.005)


class _Eventlet:
    def pool(self, size: int) -> GreenPool:
        return _Pool(size)

    def sleep(self, seconds: float) -> None:
        eventlet.sleep(seconds)

    def wait_free(self, pool: GreenPool) -> None:
        assert isinstance(pool, _Pool)
        pool.wait_available()


class EventletWorker(Worker):
    """Green threads from an eventlet pool serve up to ``worker_connections`` connections."""

    @classmethod
    def setup(cls) -> None:
        eventlet.monkey_patch()

    @classmethod
    def slots_for(cls, cfg: Config) -> int:
        return max(1, int(cfg.worker_connections))

    def init_process(self) -> NoReturn:
        # A hub (and epoll set) of this process's own, before any green thread (the control
        # thread) is started on one: the hub eventlet made in the master is shared by every
        # worker after fork(), and one worker's registrations then steal another's events (a
        # worker whose pool was full left its idle sibling deaf to the listening socket:
        # found by the flood tests of issue 20).
        eventlet.hubs.use_hub()
        super().init_process()

    def run(self) -> None:
        run_green(self, _Eventlet())
