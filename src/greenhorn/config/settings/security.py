"""The "Security" settings: limits on what a client may send.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "Security"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "limit_request_line", SECTION, c.int_range(0), 8190,
        "The longest request line (method, target and version, without the CRLF) accepted, "
        "in bytes. Longer lines get 414, or 400 when the method or version is what is long. "
        "0 means no limit other than the 1 MiB cap, which also bounds larger values. "
        "(gunicorn: default 4094, values above 8190 act as 8190.)",
        flags=("--limit-request-line",), metavar="INT",
    ),
    Setting(
        "limit_request_fields", SECTION,
        c.at_most(32768, "above 32768 acts as 32768, as in gunicorn"), 100,
        "The most header fields accepted in one request, up to 32768 (0 means 32768, and "
        "larger values act as 32768, as in gunicorn). More get 431.",
        flags=("--limit-request-fields",), metavar="INT",
    ),
    Setting(
        "limit_request_field_size", SECTION, c.int_range(0), 8190,
        "The largest header field line accepted, in bytes: name, colon, value and CRLF, "
        "as gunicorn counts it. Larger ones get 431. 0 means 65536.",
        flags=("--limit-request-field_size", "--limit-request-field-size"), metavar="INT",
    ),
    Setting(
        "header_timeout", SECTION, c.float_min(0), 5.0,
        "Seconds a client gets to send a complete request head; after that it gets 408 and "
        "the connection is closed. Protects sync workers from slow clients. 0 disables. "
        "(greenhorn only)",
        flags=("--header-timeout",), metavar="SECONDS",
    ),
    Setting(
        "body_min_rate", SECTION, c.int_range(0), 1024,
        "The slowest request body upload tolerated, in bytes per second, averaged while the "
        "body is read; slower clients are disconnected. 0 disables. (greenhorn only)",
        flags=("--body-min-rate",), metavar="BYTES",
    ),
    Setting(
        "body_buffer_size", SECTION, c.int_range(0), 65536,
        "Request body bytes the sync and gthread workers receive before calling the "
        "application. A body up to this size is read whole, and of a larger one its first "
        "this many bytes, while the connection waits in the worker's poller: a slow upload "
        "holds neither a worker nor a thread (body_min_rate still applies). A request with "
        "`Expect: 100-continue` gets its `100 Continue` then. 0 calls the application as soon "
        "as the head is in. (greenhorn only)",
        flags=("--body-buffer-size",), metavar="BYTES",
    ),
    Setting(
        "limit_request_body", SECTION, c.int_range(0), 0,
        "The largest request body accepted, in bytes (after chunked decoding). A larger "
        "Content-Length gets 413 before any of the body is read (and without `100 Continue`); "
        "a chunked body gets 413 once it passes the limit. 0 means no limit. (greenhorn only: "
        "nginx's client_max_body_size)",
        flags=("--limit-request-body",), metavar="BYTES",
    ),
)
# fmt: on
