"""Exit statuses: what a worker tells the master when it ends, and the master its supervisor.

Why a module of its own: these numbers are a contract between processes (a worker that
exits with ``WORKER_BOOT_ERROR`` makes the master stop or roll a reload back) and with the
outside world (systemd, scripts). gunicorn's values, so scripts keep working.
"""

from __future__ import annotations

__all__ = [
    "APP_LOAD_ERROR",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "WORKER_ABORTED",
    "WORKER_BOOT_ERROR",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad setting or config file, like argparse
WORKER_BOOT_ERROR = 3  # a worker could not boot (hook raised, import failed after fork)
APP_LOAD_ERROR = 4  # the WSGI application could not be loaded
WORKER_ABORTED = 1  # a worker aborted for a timeout (SIGABRT): logs its stacks, then exits
