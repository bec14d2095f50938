"""Where the master makes each worker's heartbeat file (``--worker-tmp-dir``), and what
happens when that directory disappears under a running server.

Why a module of its own: the master makes a file there before every fork, so a directory
removed while the server runs (a tmp cleaner, an ``rm -rf`` of the wrong path, a remounted
tmpfs) used to stop the master at its next spawn, with a traceback, taking the site down
(gunicorn does the same). The rules below keep the master serving instead.

Rules:
- The file is made in ``--worker-tmp-dir``, else ``/dev/shm`` when writable, else the
  system's temporary directory (``scoreboard.choose_tmp_dir``).
- If the configured directory is missing, it is created again (mode 0700, parents too: only
  the master opens files there; the worker gets the file's descriptor at fork), with one
  error line, and the file is made there.
- If that fails too, the file is made in the default directory, with one error line. The
  configured directory is tried again at every later spawn (one failed system call), and
  one line says when it works again. Nothing is logged per spawn while it stays broken.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from greenhorn.ipc.scoreboard import WorkerTmp, choose_tmp_dir

if TYPE_CHECKING:
    from greenhorn.observe.logger import Logger

__all__ = ["TmpDir"]


class TmpDir:
    """The directory of the workers' heartbeat files, recreated or replaced when it is gone."""

    def __init__(self, configured: str | None) -> None:
        self.configured = configured
        self.falling_back = False  # the last file was made in the default directory

    def new_file(self, slots: int, log: Logger) -> WorkerTmp:
        """A worker's heartbeat file and scoreboard (OSError only if no directory works)."""
        path = self.configured
        if not path:
            return WorkerTmp(choose_tmp_dir(None), slots=slots)
        try:
            tmp = self._make(path, slots, log)
        except OSError as exc:
            if not self.falling_back:
                log.error(
                    "worker_tmp_dir %s is unusable (%s); heartbeat files go to %s until it works",
                    path,
                    exc.strerror or exc,
                    choose_tmp_dir(None) or "the system's temporary directory",
                )
                self.falling_back = True
            return WorkerTmp(choose_tmp_dir(None), slots=slots)
        if self.falling_back:
            log.info("worker_tmp_dir %s works again", path)
            self.falling_back = False
        return tmp

    def _make(self, path: str, slots: int, log: Logger) -> WorkerTmp:
        try:
            return WorkerTmp(path, slots=slots)
        except FileNotFoundError:
            if os.path.isdir(path):
                raise
        os.makedirs(path, mode=0o700, exist_ok=True)
        log.error("worker_tmp_dir %s was removed; created it again", path)
        return WorkerTmp(path, slots=slots)
