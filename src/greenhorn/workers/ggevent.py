"""The gevent worker (``-k gevent``, needs gevent installed).

Monkey-patching happens in ``setup()``, which the master calls as soon as it has chosen the
worker class: before the application is imported (also with ``--preload``) and before any
worker is forked, so every module sees the cooperative socket, ssl, time and threading.
The request loop itself is shared with eventlet (``green.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gevent
from gevent.pool import Pool

from greenhorn.workers.base import Worker
from greenhorn.workers.green import GreenPool, run_green

if TYPE_CHECKING:
    from greenhorn.config import Config

__all__ = ["GeventWorker"]


class _Gevent:
    def pool(self, size: int) -> GreenPool:
        pool: GreenPool = Pool(size)  # gevent has no type information: its Pool fits
        return pool

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def wait_free(self, pool: GreenPool) -> None:
        assert isinstance(pool, Pool)
        pool.wait_available()


class GeventWorker(Worker):
    """Greenlets from a gevent pool serve up to ``worker_connections`` connections."""

    speaks_http2 = True

    @classmethod
    def setup(cls) -> None:
        from gevent import monkey

        monkey.patch_all()

    @classmethod
    def slots_for(cls, cfg: Config) -> int:
        return max(1, int(cfg.worker_connections))

    def run(self) -> None:
        run_green(self, _Gevent())
