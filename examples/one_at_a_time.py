"""A worker type written against greenhorn's own base class (docs/custom-classes.md).

Run it with ``greenhorn -k one_at_a_time:OneAtATime hello:app`` from this directory. It
serves one connection at a time, like the sync worker, with ``select`` instead of epoll,
and counts what it served in the log: everything else (booting, signals, the heartbeat's
file, HTTP, WSGI) is the base class's and the handler's.
"""

import select
import time

from greenhorn.workers.base import Worker
from greenhorn.workers.handler import Handler


class OneAtATime(Worker):
    def run(self) -> None:
        handler = Handler.for_worker(self, keep_alive=False, multithread=False)
        for listener in self.listeners:
            listener.sock.setblocking(False)
        socks = {listener.sock.fileno(): listener for listener in self.listeners}
        while self.alive:
            now = time.monotonic()
            self.beat(now)  # the heartbeat: at most once a second, from this loop only
            try:
                ready, _, _ = select.select([*socks, self._wake_r], [], [], 1.0)
            except (OSError, ValueError):  # a listener closed by a TERM
                continue
            for fd in ready:
                if fd == self._wake_r:
                    self.drain_wake()  # TERM, or the master asked something: check alive
                    continue
                accepted = self.accept(socks[fd])
                if accepted is None:
                    continue
                conn = self.make_connection(accepted[0], accepted[1], socks[fd], now)
                if conn is None:  # a TLS handshake that failed
                    continue
                try:
                    handler.serve(conn)
                finally:
                    conn.close()
                self.count_request()  # max_requests
                self.log.info("OneAtATime served request %d", self.nr)
