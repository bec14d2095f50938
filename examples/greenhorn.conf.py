"""An example greenhorn configuration file: common settings and the server hooks.

greenhorn reads ``./greenhorn.conf.py`` by itself (else ``./gunicorn.conf.py``), or the file
given with ``-c``/``--config``. It is plain Python, run once in the master: every top-level
name that is a setting name sets that setting, and a misspelt one gets a warning (names
starting with ``_`` are yours). ``GREENHORN_CMD_ARGS`` and command-line flags override what
is set here; ``greenhorn -c greenhorn.conf.py --print-config`` shows every effective value
and where it came from.

The systemd unit, the Dockerfile and the Kubernetes manifest in this directory all use this
file, so it leaves the two settings that depend on the environment alone:

- ``bind``: the default is 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set (Docker,
  Kubernetes, Heroku-style platforms); under systemd the socket comes from greenhorn.socket
  and any bind is ignored. To set it here: ``bind = ["unix:/run/greenhorn.sock"]``.
- ``workers``: ``-w N``, or WEB_CONCURRENCY, else 1. For the sync worker about two per CPU
  core when requests mostly wait on a database; see docs/workers.md.
"""

import time

# --- Workers -------------------------------------------------------------------------------

worker_class = "sync"
# A worker whose loop is silent, or that holds one request, for this many seconds gets
# SIGABRT: every thread's stack and the request line go to the error log; SIGKILL 2 s later.
timeout = 30
# After SIGTERM (stop) or SIGHUP (reload), requests in flight get this long to finish.
graceful_timeout = 30
# Recycle each worker after about 10,000 requests (a blunt cure for slow memory leaks); the
# jitter keeps the workers from restarting all at once.
max_requests = 10000
max_requests_jitter = 1000

# --- Slow and hostile clients ----------------------------------------------------------------

# A client gets 5 s to send the request head and must upload bodies at 1 KiB/s or faster;
# otherwise 408 and the connection is closed, so a slow client cannot pin a sync worker.
header_timeout = 5.0
body_min_rate = 1024
limit_request_line = 4094
limit_request_fields = 100

# --- Logging ---------------------------------------------------------------------------------

# The error log goes to stderr (errorlog = "-", the default); the access log to stdout.
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus'
loglevel = "info"

# --- Hooks -----------------------------------------------------------------------------------
# Same names and arguments as gunicorn's. An exception in post_fork or post_worker_init
# stops the worker from booting (exit code 3); in the master's hooks it is logged.

_SLOW_REQUEST = 2.0  # seconds; a private name, not a setting


def on_starting(server):
    """Master, once, before the sockets are opened and the workers forked."""
    server.log.info("starting %s", server.cfg.wsgi_app)


def when_ready(server):
    """Master: the sockets are listening and the workers are about to be forked."""
    server.log.info("ready to fork %d worker(s)", server.num_workers)


def on_reload(server):
    """Master, on SIGHUP, after the configuration was read again."""
    server.log.info("configuration reloaded")


def post_fork(server, worker):
    """In the new worker, right after fork: reset what must not be shared with the master
    (random seeds, database connections opened by a preloaded app)."""


def post_worker_init(worker):
    """In the worker, once the application is imported; the worker serves after this."""
    worker.log.debug("worker %s booted", worker.pid)


def post_request(worker, req, environ, resp):
    """In the worker, after each request (even when the app raised). Keep it cheap."""
    elapsed = time.monotonic() - req.started_at
    if elapsed > _SLOW_REQUEST:
        worker.log.warning("slow request: %s %s took %.1fs", req.method, req.path, elapsed)


def worker_abort(worker):
    """In a worker that timed out (SIGABRT); the stacks are already in the error log."""
    worker.log.warning("worker %s aborted after %d requests", worker.pid, worker.nr)


def child_exit(server, worker):
    """Master, after a worker process has exited, for whatever reason."""


def on_exit(server):
    """Master, just before it exits."""
    server.log.info("bye")
