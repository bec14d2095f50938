"""The "SSL" settings: serving HTTPS.

One row per setting, in the order of the docs page; ``greenhorn.config.settings`` joins the
sections into the table. See ``greenhorn.config.setting.Setting`` for what a row says.
"""

from __future__ import annotations

from greenhorn.config import converters as c
from greenhorn.config.setting import Setting

SECTION = "SSL"

# One argument group per line, to read as a table (ruff format would split every argument).
# fmt: off
ROWS: tuple[Setting, ...] = (
    Setting(
        "keyfile", SECTION, c.to_opt_str, None,
        "The TLS private key file. Serving TLS needs certfile, and keyfile unless the key "
        "is in certfile.",
        flags=("--keyfile",), metavar="FILE",
    ),
    Setting(
        "certfile", SECTION, c.to_opt_str, None,
        "The TLS certificate (chain) file. Setting it makes every listener speak TLS.",
        flags=("--certfile",), metavar="FILE",
    ),
    Setting(
        "ssl_version", SECTION, c.ssl_version, c.SSL_VERSION_DEFAULT,
        "An ssl.PROTOCOL_* constant or its name. Deprecated and ignored, as in gunicorn: any "
        "other value than the default loads with a warning. Set minimum_version in an "
        "ssl_context hook instead.",
        flags=("--ssl-version",), metavar="STRING",
        default_doc="`ssl.PROTOCOL_TLS` (2)", help_default="TLS",
    ),
    Setting(
        "cert_reqs", SECTION, c.cert_reqs, 0,  # ssl.CERT_NONE
        "Whether clients must present a certificate: 0 no, 1 optional, 2 required (or "
        "CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED).",
        flags=("--cert-reqs",), metavar="INT",
    ),
    Setting(
        "ca_certs", SECTION, c.to_opt_str, None,
        "The CA certificates file used to verify client certificates.",
        flags=("--ca-certs",), metavar="FILE",
    ),
    Setting(
        "suppress_ragged_eofs", SECTION, c.to_bool, True,
        "Treat a TLS connection closed without close_notify as a normal end of file.",
        flags=("--suppress-ragged-eofs",), action="store_true",
    ),
    Setting(
        "do_handshake_on_connect", SECTION, c.to_bool, False,
        "Accepted for gunicorn compatibility; changes nothing: greenhorn always completes "
        "the TLS handshake (under --header-timeout) before reading a request.",
        flags=("--do-handshake-on-connect",), action="store_true",
    ),
    Setting(
        "ciphers", SECTION, c.to_opt_str, None,
        "The TLS cipher suites, as an OpenSSL cipher list. Unset keeps Python's default list.",
        flags=("--ciphers",), metavar="STRING",
    ),
)
# fmt: on
