"""The "HTTP/2" settings: which protocols the listeners speak, and HTTP/2's own limits.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
Names, flags and defaults are gunicorn 27's; serving HTTP/2 needs the h2 library
(``pip install 'greenhorn[http2]'``).
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "HTTP/2"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "http_protocols", SECTION, c.http_protocols, ["h1"],
        "The HTTP versions to speak, as a comma-separated list, most preferred first: `h1` "
        "(HTTP/1.1), `h2` (HTTP/2), e.g. `h2,h1`. Over TLS, HTTP/2 is offered by ALPN in "
        "this order and a client that does not pick it gets HTTP/1.1; in clear text it is "
        "spoken only as http2_cleartext says. HTTP/2 needs the h2 library (`pip install "
        "'greenhorn[http2]'`: without it, asking for h2 is an error at start) and the "
        "gthread, gevent or asgi worker; other worker types log a warning and serve "
        "HTTP/1.1.",
        flags=("--http-protocols",), metavar="STRING", default_doc="`h1`", help_default="h1",
    ),
    Setting(
        "http2_cleartext", SECTION, c.http2_cleartext, "off",
        "Speak HTTP/2 without TLS (h2c) to peers in forwarded_allow_ips (a trusted proxy "
        "that terminates TLS in front). `prior-knowledge` serves connections that open with "
        "the HTTP/2 connection preface (RFC 9113 §3.4), and then a trusted peer that sends "
        "anything else, or a preface that never completes, gets 400; `upgrade` honours an "
        "HTTP/1.1 `Upgrade: h2c` request without a body (101, then the request and the "
        "connection are HTTP/2; one with a body is served as HTTP/1.1); `both` accepts "
        "either; `off` neither. Other peers are served HTTP/1.1. Needs h2 in "
        "http_protocols; ignored with TLS.",
        flags=("--http2-cleartext",), metavar="STRING",
    ),
    Setting(
        "http2_max_concurrent_streams", SECTION, c.int_range(1, 2**31 - 1), 100,
        "The most HTTP/2 streams (requests) one connection may have open at once "
        "(SETTINGS_MAX_CONCURRENT_STREAMS).",
        flags=("--http2-max-concurrent-streams",), metavar="INT",
    ),
    Setting(
        "http2_initial_window_size", SECTION, c.int_range(0, 2**31 - 1), 65535,
        "The HTTP/2 flow-control window of each stream, in bytes: how much of a request "
        "body the client may send ahead of the application reading it "
        "(SETTINGS_INITIAL_WINDOW_SIZE).",
        flags=("--http2-initial-window-size",), metavar="INT",
    ),
    Setting(
        "http2_max_frame_size", SECTION, c.int_range(16384, 16777215), 16384,
        "The largest HTTP/2 frame payload the server accepts, in bytes, from 16384 to "
        "16777215 (SETTINGS_MAX_FRAME_SIZE).",
        flags=("--http2-max-frame-size",), metavar="INT",
    ),
    Setting(
        "http2_max_header_list_size", SECTION, c.int_range(0), 65536,
        "The largest HTTP/2 header list the server accepts, in bytes once decompressed "
        "(SETTINGS_MAX_HEADER_LIST_SIZE). A bigger one, or a compressed block that would "
        "decode bigger (an HPACK bomb), closes the connection. 0 advertises no limit; "
        "greenhorn then still refuses a list over 1 MiB.",
        flags=("--http2-max-header-list-size",), metavar="INT",
    ),
)
# fmt: on
