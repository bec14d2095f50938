"""The field-line grammar (RFC 9110 §5, RFC 9112 §5), shared by the request head and by
chunked trailers, and the splitting of validated field lines (cached: see FIELD_PAIRS).

Strategy: validate a whole block of field lines with ONE regular expression, then split.
The expression is linear (possessive quantifiers, character classes that cannot overlap at
a boundary), so a hostile header cannot make it backtrack. Only when the fast check fails do
we walk the lines one by one to name the exact error. Whitespace is only ever SP and HTAB:
``str.strip()`` with no argument would also strip ``\\x85``/``\\xa0`` and let
``Transfer-Encoding: \\xa0chunked`` count as chunked.
"""

from __future__ import annotations

import re

from greenhorn.http import errors

TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
# field-value bytes as latin-1 text: HTAB, SP, VCHAR, obs-text. No NUL, CR, LF, CTL, DEL.
VCHAR = r"\t\x20-\x7e\x80-\xff"

TOKEN_RE = re.compile(f"[{TCHAR}]+")
# A block of field lines separated by CRLF, without the final CRLF.
FIELD_BLOCK_RE = re.compile(f"[{TCHAR}]++:[{VCHAR}]*+(?:\r\n[{TCHAR}]++:[{VCHAR}]*+)*+")
BAD_VALUE_RE = re.compile(f"[^{VCHAR}]")
# A field line with SP/HTAB between the name and the colon: refused (RFC 9112 §5.1), unless
# ``strip_header_spaces`` is on, when the whitespace is removed (gunicorn's setting).
SPACED_FIELD_RE = re.compile(f"([{TCHAR}]++)[ \t]++(:[{VCHAR}]*+)")


def strip_name_space(line: str) -> str:
    """``Name : value`` -> ``Name: value`` (a line that SPACED_FIELD_RE matches); other
    lines unchanged."""
    m = SPACED_FIELD_RE.fullmatch(line)
    return line if m is None else m.group(1) + m.group(2)


BAD_NAME_RE = re.compile(f"[^{TCHAR}]")


# Field lines seen before, split: clients repeat the same lines (Host, User-Agent,
# Accept...) on every request, so the parser looks a whole head's lines up in C
# (``map(FIELD_PAIRS.get, lines)``) and only special lines reach Python code.
# Bounded in entries and in line length; the three tables are cleared together.
# Headers with framing or routing meaning: the parser inspects them on every request.
SPECIAL_NAMES = frozenset(
    ("CONTENT-LENGTH", "TRANSFER-ENCODING", "HOST", "CONNECTION", "EXPECT", "CONTENT-TYPE")
)
FIELD_PAIRS: dict[str, tuple[str, str]] = {}  # line -> (UPPER name, value), every line
SPECIAL_PAIRS: dict[str, tuple[str, str]] = {}  # the lines whose name is in SPECIAL_NAMES
UNDERSCORE_LINES: set[str] = set()  # lines whose name has "_" (dropped by default)
FIELD_CACHE_MAX = 2048
FIELD_CACHE_LINE = 256


def split_field_line(line: str) -> tuple[str, str]:
    """One validated field line → (UPPER name, value without OWS), remembered."""
    name, _, value = line.partition(":")
    pair = (name.upper(), value.strip(" \t"))
    if len(line) <= FIELD_CACHE_LINE:
        if len(FIELD_PAIRS) >= FIELD_CACHE_MAX:
            FIELD_PAIRS.clear()
            SPECIAL_PAIRS.clear()
            UNDERSCORE_LINES.clear()
        if "_" in pair[0]:
            UNDERSCORE_LINES.add(line)
        elif pair[0] in SPECIAL_NAMES:
            SPECIAL_PAIRS[line] = pair
        FIELD_PAIRS[line] = pair
    return pair


Pairs = list[tuple[str, str]]


def split_fields(
    lines: list[str], header_map: str, forwarders: frozenset[str] = frozenset()
) -> tuple[Pairs, Pairs, Pairs]:
    """Split every validated line (the cache did not know them all): (headers, special
    headers, forwarder headers). A name containing "_" that ``forwarders`` lists (or all,
    with ``*``) is set apart for the worker to apply if the peer is trusted; other such
    names are dropped, refused or kept as ``header_map`` says."""
    pairs: Pairs = []
    specials: Pairs = []
    forwarded: Pairs = []
    for line in lines:
        pair = FIELD_PAIRS.get(line)
        if pair is None:
            pair = split_field_line(line)
        name = pair[0]
        if "_" in name:
            if name in forwarders or "*" in forwarders:
                forwarded.append(pair)
                continue
            if header_map == "drop":
                continue
            if header_map == "refuse":
                raise errors.InvalidHeaderName(f"underscore in header name {name}")
        elif name in SPECIAL_NAMES:
            specials.append(pair)
        pairs.append(pair)
    return pairs, specials, forwarded


CONNECTION_CACHE: dict[str, frozenset[str]] = {}  # Connection value -> its tokens
CONNECTION_CACHE_MAX = 256


def connection_tokens(value: str) -> frozenset[str]:
    """The lowercase tokens of a Connection header value (``close``, ``keep-alive``...),
    remembered: clients send the same one or two values on every request."""
    value_lower = value.lower()
    tokens = frozenset(t.strip(" \t") for t in value_lower.split(","))
    if len(value) <= FIELD_CACHE_LINE:
        if len(CONNECTION_CACHE) >= CONNECTION_CACHE_MAX:
            CONNECTION_CACHE.clear()
        CONNECTION_CACHE[value] = tokens
    return tokens


def diagnose_line(line: str, error: type[errors.HTTPError]) -> errors.HTTPError:
    """Name what is wrong with one field line that failed the block check.

    ``error`` is the class used for value/syntax problems (InvalidHeader for the head,
    InvalidTrailer for trailers); name problems in the head use InvalidHeaderName.
    """
    if line[:1] in (" ", "\t"):
        if error is errors.InvalidHeader:
            return errors.ObsoleteFolding(f"obsolete line folding: {errors.excerpt(line)}")
        return error(f"folded trailer line: {errors.excerpt(line)}")
    name, colon, value = line.partition(":")
    if not colon:
        if "\n" in line or "\r" in line:
            return error(f"bare CR or LF in field line: {errors.excerpt(line)}")
        return error(f"field line without a colon: {errors.excerpt(line)}")
    if not TOKEN_RE.fullmatch(name):
        first_bad = BAD_NAME_RE.search(name)
        if first_bad is not None and first_bad.group() in "\r\n":
            return error(f"bare CR or LF in field line: {errors.excerpt(line)}")
        cls = errors.InvalidHeaderName if error is errors.InvalidHeader else error
        return cls(f"invalid field name: {errors.excerpt(name)}")
    bad = BAD_VALUE_RE.search(value)
    char = bad.group() if bad else "?"
    what = "bare CR or LF" if char in "\r\n" else "control character"
    return error(f"{what} in value of {errors.excerpt(name)}")


def split_field(line: str) -> tuple[str, str]:
    """Split one validated field line into (UPPER name, value without surrounding SP/HTAB)."""
    name, _, value = line.partition(":")
    return name.upper(), value.strip(" \t")


def unfold(lines: list[str]) -> list[str]:
    """Join obs-fold continuation lines onto the previous line with one SP.

    Used only when ``permit_obsolete_folding`` is on. A continuation with no previous
    field line is an error.
    """
    out: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not out:
                raise errors.InvalidHeader("folded line before any header field")
            out[-1] = out[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            out.append(line)
    return out


def check_codings(values: list[str]) -> None:
    """Transfer-Encoding must be a clean list ending in exactly one ``chunked``."""
    codings = [c.strip(" \t").lower() for v in values for c in v.split(",")]
    for coding in codings:
        if TOKEN_RE.fullmatch(coding) is None:
            raise errors.InvalidTransferEncoding("malformed Transfer-Encoding")
    if codings[-1] != "chunked" or codings.count("chunked") != 1:
        raise errors.InvalidTransferEncoding("Transfer-Encoding must end with one chunked")
    if len(codings) > 1:
        raise errors.UnsupportedTransferCoding(f"unsupported transfer coding {codings[0]}")
