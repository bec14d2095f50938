"""The "Worker Processes" settings: how many workers of which type, their limits, timeouts and recycling.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Worker Processes"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "workers", SECTION, c.workers, 1,
        "The number of worker processes. Two to four per CPU core is a common start; `auto` "
        "sizes from the CPUs and memory the process may use. Defaults to the WEB_CONCURRENCY "
        "environment variable when it is set, else 1. 0, which gunicorn accepts and then "
        "serves nothing with until TTIN adds a worker, runs 1 worker and says so.",
        flags=("-w", "--workers"), metavar="INT",
        default_doc="`1`, or `$WEB_CONCURRENCY` when set",
        help_default="1, or $WEB_CONCURRENCY",
    ),
    Setting(
        "worker_class", SECTION, c.worker_class, "sync",
        "The worker type: `sync`, `gthread`, `gevent`, `eventlet`, `asgi`, or the dotted "
        "path of a worker class. `sync` serves one request at a time per process, `gthread` "
        "a thread pool per process, `gevent` and `eventlet` greenlets (they need those "
        "packages), `asgi` an ASGI application from an asyncio event loop (HTTP/1.1 and "
        "WebSockets). gunicorn's `egg:gunicorn#NAME` and `gunicorn.workers.*` class paths "
        "for these types are accepted.",
        flags=("-k", "--worker-class"), metavar="STRING",
    ),
    Setting(
        "threads", SECTION, c.at_least(1, 1, "0 threads means 1"), 1,
        "The number of request threads per worker, for the gthread worker. As in gunicorn, "
        "a sync worker with more than one thread runs as gthread, and 0 means 1.",
        flags=("--threads",), metavar="INT",
    ),
    Setting(
        "worker_connections", SECTION,
        c.at_least(1, 1000, "no connection would be served (gunicorn accepts 0 and then "
                   "serves nothing); using 1000"), 1000,
        "The most client connections one worker holds at once. For sync workers these are "
        "the connections waiting for the rest of their request; for gthread, those and the "
        "ones in its threads or kept alive; for gevent, eventlet and asgi, the connections "
        "they serve (open WebSockets count). Past it, a worker stops accepting and new "
        "connections wait in the listen queue. Sync and gthread lower it to fit the "
        "open-file limit (ulimit -n). 0 is taken as the default, with a warning.",
        flags=("--worker-connections",), metavar="INT",
    ),
    Setting(
        "max_requests", SECTION, c.int_range(0), 0,
        "Restart a worker after it has served this many requests, a blunt guard against "
        "memory leaks. 0 disables.",
        flags=("--max-requests",), metavar="INT",
    ),
    Setting(
        "max_requests_jitter", SECTION, c.int_range(0), 0,
        "Add a random 0..N to each worker's max_requests, so that workers do not all restart "
        "at the same moment.",
        flags=("--max-requests-jitter",), metavar="INT",
    ),
    Setting(
        "timeout", SECTION, c.int_range(0), 30,
        "Kill and replace a worker whose heartbeat has been silent for this many seconds. "
        "For sync workers that bounds the time one request may take. 0 disables.",
        flags=("-t", "--timeout"), metavar="INT",
    ),
    Setting(
        "graceful_timeout", SECTION, c.int_range(0), 30,
        "After a graceful stop or restart is requested, how many seconds workers get to "
        "finish the requests in hand before they are killed.",
        flags=("--graceful-timeout",), metavar="INT",
    ),
    Setting(
        "keepalive", SECTION, c.int_range(0), 2,
        "How many seconds an idle keep-alive connection is held open waiting for the next "
        "request. Behind a load balancer, set it above the balancer's idle timeout.",
        flags=("--keep-alive",), metavar="INT",
    ),
    Setting(
        "shutdown_delay", SECTION, c.float_min(0), 0.0,
        "Seconds to keep serving after SIGTERM while /readyz answers 503, so a load balancer "
        "takes the instance out of rotation before its listeners close. Then the graceful "
        "stop proceeds; a second SIGTERM ends the delay early, SIGINT/SIGQUIT stop at once. "
        "0 stops accepting at once. (greenhorn only)",
        flags=("--shutdown-delay",), metavar="SECONDS",
    ),
    Setting(
        "asgi_loop", SECTION, c.choice("auto", "asyncio", "uvloop"), "auto",
        "The event loop of the asgi worker: `asyncio`, `uvloop` (pip install uvloop), or "
        "`auto`, which uses uvloop when it is installed.",
        flags=("--asgi-loop",), metavar="STRING",
    ),
    Setting(
        "asgi_lifespan", SECTION, c.choice("auto", "on", "off"), "auto",
        "The ASGI lifespan protocol of the asgi worker: `on`, `auto` or `off`. With `on` "
        "the application's startup runs before the worker accepts connections and its "
        "shutdown when the worker stops; `auto` does the same unless the application does "
        "not speak lifespan; `off` never sends lifespan events. A startup that fails (`lifespan.startup.failed`, or any "
        "failure with `on`) stops the server with the boot-error exit status (3).",
        flags=("--asgi-lifespan",), metavar="STRING",
    ),
    Setting(
        "asgi_disconnect_grace_period", SECTION, c.int_range(0), 3,
        "Seconds an ASGI application gets, after its client went away and it was told so "
        "(`http.disconnect`), to finish before its request task is cancelled. 0 cancels at "
        "once.",
        flags=("--asgi-disconnect-grace-period",), metavar="INT",
    ),
    Setting(
        "websocket_max_message_size", SECTION, c.int_range(0), 16 * 1024 * 1024,
        "The largest WebSocket message, in bytes, the asgi worker accepts (each message is "
        "held whole before the application gets it). A bigger one closes the connection "
        "with code 1009 (message too big). 0 means no limit.",
        flags=("--websocket-max-message-size",), metavar="INT",
    ),
    Setting(
        "http_parser", SECTION, c.http_parser, "auto",
        "gunicorn's choice of HTTP parser: `auto`, `fast` (its C extension) or `python`. "
        "greenhorn has one parser, its own, whatever this says; `fast` gets a warning that it "
        "changes nothing.",
        flags=("--http-parser",), metavar="STRING",
    ),
    Setting(
        "workers_min", SECTION, c.optional(c.int_range(1)), None,
        "The fewest workers autoscaling may shrink to. Unset means no autoscaling below "
        "`workers`. (greenhorn only)",
        flags=("--workers-min",), metavar="INT",
    ),
    Setting(
        "workers_max", SECTION, c.optional(c.int_range(1)), None,
        "The most workers autoscaling may grow to. Unset means no autoscaling above "
        "`workers`. (greenhorn only)",
        flags=("--workers-max",), metavar="INT",
    ),
    Setting(
        "worker_memory", SECTION, c.optional(c.int_range(1)), None,
        "The memory one worker is expected to need, in MB. With `-w auto` the worker count is "
        "capped so that this many MB per worker fit in the memory limit. (greenhorn only)",
        flags=("--worker-memory",), metavar="MB",
    ),
    Setting(
        "max_worker_memory", SECTION, c.optional(c.int_range(1)), None,
        "Soft memory limit per worker, in MB: a worker above it is recycled gracefully once "
        "a replacement is ready. Unset disables. (greenhorn only)",
        flags=("--max-worker-memory",), metavar="MB",
    ),
    Setting(
        "max_worker_memory_hard", SECTION, c.optional(c.int_range(1)), None,
        "Hard memory limit per worker, in MB: a worker above it is killed at once. Must not "
        "be below max_worker_memory. Unset disables. (greenhorn only)",
        flags=("--max-worker-memory-hard",), metavar="MB",
    ),
    Setting(
        "max_worker_lifetime", SECTION, c.int_range(0), 0,
        "Recycle a worker gracefully after it has run for this many seconds. 0 disables. "
        "(greenhorn only)",
        flags=("--max-worker-lifetime",), metavar="SECONDS",
    ),
)
# fmt: on
