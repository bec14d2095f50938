"""The request corpus: decode the readable ``.http`` files, read the ``.expect`` literals, and
replay a request through the sans-IO parser in any chunking.

Why a module of its own: the corpus is replayed by several tests (every chunking strategy in
``test_corpus.py``, mutation fuzzing in ``test_fuzz.py``, the stdlib differential test), and
they must all decode the files and drive the parser the same way. The format is described in
``tests/requests/README.md``.

``tests`` is not a package: test modules put this directory on ``sys.path`` and
``import corpus``.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
KINDS = ("valid", "invalid")

_ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}
_ESCAPE_RE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_NAME_RE = re.compile(r"^\d{3}_[a-z0-9_]+$")

_VALID_KEYS = frozenset({"requests", "limits", "eof"})
_INVALID_KEYS = frozenset({"error", "status", "requests_before", "limits", "eof"})
REQUEST_KEYS = frozenset(
    {
        "method",
        "uri",
        "path",
        "query",
        "fragment",
        "version",
        "headers",
        "body",
        "trailers",
        "keep_alive",
        "expect_continue",
        "chunked",
        "content_length",
        "host",
    }
)
# Request attributes read from the parser's Request event (body and trailers come from the
# Data and EndOfMessage events).
HEAD_FIELDS = tuple(sorted(REQUEST_KEYS - {"body", "trailers"}))


class CorpusError(ValueError):
    """A corpus file is malformed (bad escape, unknown expectation key, ...)."""


def decode_http(text: str) -> bytes:
    """Turn the readable ``.http`` text into the raw request bytes.

    Real line breaks are layout only and are dropped; ``\\r \\n \\t \\0 \\\\ \\xNN`` are decoded;
    every other character stands for its latin-1 byte. An unknown escape is an error, so a typo
    cannot silently become a literal backslash.
    """
    text = text.replace("\r", "").replace("\n", "")
    out = bytearray()
    pos = 0
    for m in _ESCAPE_RE.finditer(text):
        out += text[pos : m.start()].encode("latin-1")
        esc = m.group(1)
        if esc in _ESCAPES:
            out += _ESCAPES[esc]
        elif len(esc) == 3 and esc[0] == "x":
            out.append(int(esc[1:], 16))
        else:
            raise CorpusError(f"unknown escape \\{esc!r} at offset {m.start()}")
        pos = m.end()
    out += text[pos:].encode("latin-1")
    return bytes(out)


def encode_http(data: bytes, width: int = 96) -> str:
    """Inverse of :func:`decode_http`: readable ASCII, a real line break after every ``\\n``
    and long lines wrapped at ``width`` characters (wrapping is ignored when decoding)."""
    lines: list[str] = []
    cur: list[str] = []
    cur_len = 0
    for byte in data:
        ch = chr(byte)
        if ch == "\\":
            tok = "\\\\"
        elif ch == "\r":
            tok = "\\r"
        elif ch == "\n":
            tok = "\\n"
        elif ch == "\t":
            tok = "\\t"
        elif byte < 0x20 or byte >= 0x7F:
            tok = f"\\x{byte:02x}"
        else:
            tok = ch
        if cur_len + len(tok) > width:
            lines.append("".join(cur))
            cur, cur_len = [], 0
        cur.append(tok)
        cur_len += len(tok)
        if ch == "\n":
            lines.append("".join(cur))
            cur, cur_len = [], 0
    if cur:
        lines.append("".join(cur))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    """One corpus case: ``name`` is ``valid/001_get_simple``."""

    name: str
    kind: str
    data: bytes
    expect: dict[str, Any]

    @property
    def limits(self) -> dict[str, Any]:
        return dict(self.expect.get("limits", {}))

    @property
    def eof(self) -> bool:
        return bool(self.expect.get("eof", False))


def _check_expect(name: str, kind: str, expect: Any) -> None:
    if not isinstance(expect, dict):
        raise CorpusError(f"{name}: expectation must be a dict")
    allowed = _VALID_KEYS if kind == "valid" else _INVALID_KEYS
    unknown = set(expect) - allowed
    if unknown:
        raise CorpusError(f"{name}: unknown keys {sorted(unknown)}")
    if kind == "valid":
        reqs = expect.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise CorpusError(f"{name}: 'requests' must be a non-empty list")
        for req in reqs:
            bad = set(req) - REQUEST_KEYS
            if bad:
                raise CorpusError(f"{name}: unknown request keys {sorted(bad)}")
    else:
        for key in ("error", "status", "requests_before"):
            if key not in expect:
                raise CorpusError(f"{name}: missing {key!r}")


def load_case(http_path: Path) -> Case:
    """Read one ``.http`` file and its ``.expect`` sibling."""
    kind = http_path.parent.name
    stem = http_path.stem
    name = f"{kind}/{stem}"
    if kind not in KINDS or not _NAME_RE.match(stem):
        raise CorpusError(f"{http_path}: expected {KINDS}/NNN_snake_name.http")
    data = decode_http(http_path.read_text(encoding="latin-1"))
    expect = ast.literal_eval(http_path.with_suffix(".expect").read_text(encoding="utf-8"))
    _check_expect(name, kind, expect)
    return Case(name=name, kind=kind, data=data, expect=expect)


def load(kind: str | None = None) -> list[Case]:
    """All cases of one kind (or both), sorted by name."""
    kinds = KINDS if kind is None else (kind,)
    cases = []
    for k in kinds:
        for path in sorted((ROOT / k).glob("*.http")):
            cases.append(load_case(path))
    return cases


# --- chunking and replaying ---


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets, dropping empty pieces (``b""`` would mean EOF)."""
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@dataclass
class Outcome:
    """What the parser made of one input: the complete requests, the error (if any) and a
    normalised event list (consecutive Data merged, NEED_DATA dropped) for comparisons."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None
    events: list[tuple[Any, ...]] = field(default_factory=list)
    partial: bool = False  # a Request head was seen without its EndOfMessage
    saw_eof: bool = False

    @property
    def error_name(self) -> str | None:
        return None if self.error is None else type(self.error).__name__


def head_fields(req: Any) -> dict[str, Any]:
    """The contract fields of a Request event as plain values (missing ones as '<missing>')."""
    out = {}
    for name in HEAD_FIELDS:
        value = getattr(req, name, "<missing>")
        if name == "headers" and isinstance(value, Iterable):
            value = [tuple(h) for h in value]
        elif name == "version" and isinstance(value, Sequence):
            value = tuple(value)
        out[name] = value
    return out


def _add_event(events: list[tuple[Any, ...]], ev: tuple[Any, ...]) -> None:
    if ev[0] == "Data" and events and events[-1][0] == "Data":
        events[-1] = ("Data", events[-1][1] + ev[1])
    elif ev != ("Data", b""):
        events.append(ev)


def replay(
    pieces: Sequence[bytes], limits: dict[str, Any] | None = None, eof: bool = False
) -> Outcome:
    """Feed ``pieces`` one by one (then ``b""`` if ``eof``) and pull events until the parser
    needs data, reports EOF or raises. Only ``errors.HTTPError`` is caught: anything else is a
    parser bug and propagates. Raises AssertionError when the parser does not make progress.
    """
    from greenhorn.http import errors
    from greenhorn.http.parser import EOF, NEED_DATA, Data, EndOfMessage, Limits, Parser, Request

    assert all(pieces), "an empty piece would mean EOF"
    parser = Parser(Limits(**(limits or {})))
    out = Outcome()
    current: dict[str, Any] | None = None
    body: list[bytes] = []
    total = sum(len(p) for p in pieces)
    budget = 4 * total + 8 * len(pieces) + 64  # events; a correct parser needs far fewer
    feeds = [*pieces, b""] if eof else list(pieces)
    for piece in feeds:
        parser.feed(piece)
        while True:
            budget -= 1
            assert budget > 0, "parser keeps returning events without consuming input"
            try:
                ev = parser.next_event()
            except errors.HTTPError as err:
                out.error = err
                out.partial = current is not None
                _add_event(out.events, ("error", type(err).__name__, err.code))
                try:
                    parser.next_event()
                except errors.HTTPError as again:
                    assert type(again) is type(err), f"second raise {again!r} != {err!r}"
                else:
                    raise AssertionError(f"next_event() after {err!r} did not raise")
                return out
            if ev is NEED_DATA:
                break
            if ev is EOF:
                assert piece == b"", "EOF reported before the peer closed"
                assert current is None, "EOF reported inside a message"
                out.saw_eof = True
                _add_event(out.events, ("EOF",))
                return out
            if isinstance(ev, Request):
                assert current is None, "Request event inside a message"
                current = head_fields(ev)
                body = []
                _add_event(out.events, ("Request", tuple(sorted(current.items()))))
            elif isinstance(ev, Data):
                assert current is not None, "Data event outside a message"
                body.append(bytes(ev.data))
                _add_event(out.events, ("Data", bytes(ev.data)))
            elif isinstance(ev, EndOfMessage):
                assert current is not None, "EndOfMessage outside a message"
                trailers = [tuple(t) for t in ev.trailers]
                current["body"] = b"".join(body)
                current["trailers"] = trailers
                out.requests.append(current)
                _add_event(out.events, ("EndOfMessage", tuple(trailers)))
                current = None
                parser.start_next()
            else:
                raise AssertionError(f"unexpected event {ev!r}")
    out.partial = current is not None
    return out
