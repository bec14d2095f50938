"""The parser's knobs: one frozen ``Limits`` per worker, read by the head parser and by the
chunked body reader.

Why a module of its own: both ``parser`` (request heads) and ``body`` (chunked trailers)
apply these limits, and ``parser`` builds the body readers. With ``Limits`` here, both
import it and neither imports the other's module for it (no body <-> parser cycle).

The effective limits are computed once, when the worker builds its ``Limits``, never per
request. How each setting counts, as gunicorn counts it:

- ``max_line`` (``limit_request_line``): the request line without its CRLF. 0 means no
  limit of the user's, only ``MAX_LINE_CAP``; values above 8190 are honoured up to it.
- ``max_field_size`` (``limit_request_field_size``): a whole field line, its CRLF included
  (gunicorn's corpus case invalid/008: 8189 bytes + CRLF is over 8190). 0: ``MAX_FIELD_CAP``.
- ``max_fields`` (``limit_request_fields``): field lines, up to ``MAX_FIELDS_CAP``.
- ``max_body`` (``limit_request_body``): body bytes (after chunked decoding). 0: no limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MAX_FIELDS_CAP", "MAX_FIELD_CAP", "MAX_HEAD_CAP", "MAX_LINE_CAP", "Limits"]

DEFAULT_LINE = 8190  # RFC 9112 §3: support request lines of at least 8000 octets
MAX_LINE_CAP = 1024 * 1024  # "unlimited" request line: gunicorn's cap for 0
MAX_FIELD_CAP = 65536  # "unlimited" field size still has a ceiling
MAX_FIELDS_CAP = 32768  # gunicorn's ceiling for limit_request_fields
MAX_HEAD_CAP = 4 * 1024 * 1024  # whatever the limits say, a head is never buffered past this
CRLF = 2


@dataclass(frozen=True, slots=True)
class Limits:
    """The parser's knobs, named after gunicorn's settings (0 means unlimited).

    The effective limits are fields computed here: ``line_limit`` (request line bytes),
    ``field_limit`` (field line bytes without the CRLF), ``fields_limit`` (field lines) and
    ``head_limit`` (bytes buffered while the head is incomplete).
    """

    max_line: int = DEFAULT_LINE  # limit_request_line
    max_fields: int = 100  # limit_request_fields
    max_field_size: int = 8190  # limit_request_field_size
    header_map: str = "drop"  # drop | refuse | dangerous: header names with "_"
    forwarders: frozenset[str] = frozenset()  # forwarder_headers: "_" names set apart
    permit_obsolete_folding: bool = False
    casefold_http_method: bool = False
    permit_unconventional_http_method: bool = False
    permit_unconventional_http_version: bool = False
    strip_header_spaces: bool = False  # accept "Name : value" (gunicorn's setting)
    max_body: int = 0  # limit_request_body: 0 means no limit
    line_limit: int = field(init=False, default=0)
    field_limit: int = field(init=False, default=0)
    fields_limit: int = field(init=False, default=0)
    head_limit: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        line = self.max_line if 0 < self.max_line <= MAX_LINE_CAP else MAX_LINE_CAP
        size = self.max_field_size if self.max_field_size > 0 else MAX_FIELD_CAP
        count = self.max_fields if 0 < self.max_fields <= MAX_FIELDS_CAP else MAX_FIELDS_CAP
        head = min(line + CRLF + (count + 1) * size + CRLF, MAX_HEAD_CAP)
        object.__setattr__(self, "line_limit", line)
        object.__setattr__(self, "field_limit", max(size - CRLF, 0))
        object.__setattr__(self, "fields_limit", count)
        object.__setattr__(self, "head_limit", head)
