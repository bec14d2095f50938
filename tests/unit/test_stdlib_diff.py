"""Differential test: the stdlib's ``http.server`` reads the valid corpus the way we do.

The oracle is ``BaseHTTPRequestHandler.parse_request`` over an ``io.BytesIO`` (no sockets).
It is lenient where we are strict, so it is only an oracle for requests we accept: for those,
method, target, version, header fields, body, and (where the stdlib models them) keep-alive
and ``Expect: 100-continue`` must agree. Pipelined requests are read one after another from
the same stream, reading each Content-Length body ourselves, as the stdlib leaves bodies to
the application.
"""

from __future__ import annotations

import io
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "requests"))
import corpus


class StdlibRequest(BaseHTTPRequestHandler):
    """Parse one request from ``rfile`` without a socket or a server."""

    protocol_version = "HTTP/1.1"  # else the stdlib closes every connection

    def __init__(self, rfile: io.BytesIO) -> None:  # skip socketserver's handle()
        self.rfile = rfile
        self.wfile = io.BytesIO()
        self.client_address = ("127.0.0.1", 0)
        self.close_connection = True
        self.expect_continue = False
        self.raw_requestline = rfile.readline(65537)
        self.ok = self.parse_request()

    def handle_expect_100(self) -> bool:
        self.expect_continue = True
        return True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def ineligible(case: corpus.Case) -> str | None:
    """Why the stdlib cannot serve as an oracle for this case (None: it can)."""
    if case.limits:
        # Folding, method casefolding, header_map=dangerous...: no stdlib equivalent.
        return "non-default Limits"
    if case.data.startswith(b"\r\n") or b"\r\n\r\n\r\n" in case.data:
        # RFC 9112 §2.2 lets a server skip empty lines before a request line; the stdlib
        # reads the empty line as an empty request line instead.
        return "empty line before a request line"
    for req in case.expect["requests"]:
        headers = req.get("headers", [])
        if len(headers) >= 100:
            # http.client counts the blank line against its 100-line cap (_MAXHEADERS).
            return "100 header fields"
        names = {name for name, _ in headers}
        if any(n == "EXPECT" and v.lower() != "100-continue" for n, v in headers):
            # The stdlib compares the whole Expect value, not its list members.
            return "Expect as a list"
        if req.get("chunked") or "TRANSFER-ENCODING" in names:
            # BaseHTTPRequestHandler does not frame bodies; chunked cannot be read without
            # re-implementing the thing under test.
            return "chunked body"
    return None


VALID = corpus.load("valid")
ELIGIBLE = [c for c in VALID if ineligible(c) is None]


def stdlib_parse(data: bytes) -> list[dict[str, Any]]:
    """Every request in ``data`` as the stdlib sees it."""
    rfile = io.BytesIO(data)
    out = []
    while rfile.tell() < len(data):
        req = StdlibRequest(rfile)
        assert req.ok, f"stdlib rejected request #{len(out)}: {req.wfile.getvalue()[:80]!r}"
        length = int(req.headers.get("Content-Length", "0"))
        version = req.request_version.removeprefix("HTTP/").split(".")
        connection = req.headers.get_all("Connection") or []
        out.append(
            {
                "method": req.command,
                "target": req.path,
                "version": (int(version[0]), int(version[1])),
                # compat32 strips leading whitespace only; RFC 9110 §5.5 strips both sides.
                "headers": [(n.upper(), v.rstrip(" \t")) for n, v in req.headers.items()],
                "body": rfile.read(length),
                # The stdlib compares the whole Connection value, not its tokens.
                "keep_alive": None
                if len(connection) > 1 or "," in "".join(connection)
                else not req.close_connection,
                "expect_continue": req.expect_continue,
            }
        )
    return out


def ours(case: corpus.Case) -> list[dict[str, Any]]:
    outcome = corpus.replay([case.data], case.limits, eof=case.eof)
    assert outcome.error is None, f"greenhorn rejected a valid case: {outcome.error!r}"
    return outcome.requests


def test_enough_cases_are_compared() -> None:
    assert len(ELIGIBLE) >= 40, [c.name for c in ELIGIBLE]


@pytest.mark.parametrize("case", ELIGIBLE, ids=[c.name for c in ELIGIBLE])
def test_same_as_stdlib(case: corpus.Case) -> None:
    theirs = stdlib_parse(case.data)
    mine = ours(case)
    assert len(theirs) == len(mine)
    for std, req in zip(theirs, mine, strict=True):
        target = req["uri"]
        if target.startswith("//"):
            target = "/" + target.lstrip("/")  # the stdlib collapses a leading "//" (gh-87389)
        assert std["method"] == req["method"]
        assert std["target"] == target
        assert std["version"] == req["version"]
        # We drop names with "_" (header_map="drop"); the stdlib keeps them.
        assert [h for h in std["headers"] if "_" not in h[0]] == req["headers"]
        assert std["body"] == req["body"]
        if std["keep_alive"] is not None:
            assert std["keep_alive"] == req["keep_alive"]
        assert std["expect_continue"] == req["expect_continue"]
