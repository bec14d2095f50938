"""Process-level helpers that are not about sockets or config: exit codes, titles,
privilege drop, daemonizing, close-on-exec.

Why a module of its own: gunicorn keeps these in a grab-bag util.py; here they are named
after their job so the arbiter and the worker read as a list of verbs.
"""

from __future__ import annotations

# Exit codes of the master process (gunicorn's values, so scripts keep working).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad setting or config file, like argparse
WORKER_BOOT_ERROR = 3  # a worker could not boot (hook raised, import failed after fork)
APP_LOAD_ERROR = 4  # the WSGI application could not be loaded
