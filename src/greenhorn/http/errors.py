"""Protocol errors, each carrying the HTTP status the server answers with.

Why this module exists: the parser raises, the worker answers. If the status code lives on
the exception, the worker builds its error response by reading two attributes instead of
walking an ``isinstance`` ladder (gunicorn's ``handle_error``), and status knowledge lives in
exactly one place. ``str(error)`` is short, ASCII and safe to echo back to the client: it
never contains raw request bytes beyond a bounded, escaped excerpt.
"""

from __future__ import annotations


def excerpt(data: bytes | str, limit: int = 40) -> str:
    """Return a short, printable, escaped view of wire data for error messages and logs."""
    if isinstance(data, str):
        data = data.encode("latin-1", "replace")
    text = repr(data[:limit])[2:-1]
    return text + ("..." if len(data) > limit else "")


class HTTPError(Exception):
    """Base of every error the parser or the connection handler raises about a request."""

    code = 400
    reason = "Bad Request"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.reason)


class InvalidRequestLine(HTTPError):
    """The request line is not ``METHOD SP TARGET SP VERSION CRLF``."""


class InvalidMethod(HTTPError):
    """The method is not an acceptable token."""


class InvalidTarget(HTTPError):
    """The request target has bytes outside the URI grammar (raw non-ASCII, ``#``, ``\\``),
    userinfo, or a form the method does not allow."""


class UnsupportedMethod(HTTPError):
    """CONNECT: a WSGI server has no tunnel to open, so it refuses before the application."""

    code = 501
    reason = "Not Implemented"


class InvalidVersion(HTTPError):
    """The protocol version is not ``HTTP/d.d``."""


class UnsupportedVersion(HTTPError):
    """A well-formed version other than HTTP/1.0 and HTTP/1.1 (HTTP/2 preface included)."""

    code = 505
    reason = "HTTP Version Not Supported"


class RequestLineTooLong(HTTPError):
    """The request line exceeds ``limit_request_line``."""

    code = 414
    reason = "URI Too Long"


class InvalidHeader(HTTPError):
    """A header line is malformed: no colon, bad value bytes, bare CR or LF."""


class InvalidHeaderName(HTTPError):
    """A header name is not a token (empty, whitespace before the colon, non-ASCII...)."""


class ObsoleteFolding(HTTPError):
    """A header line starts with whitespace (obs-fold), refused by default."""


class TooManyHeaders(HTTPError):
    """More header fields than ``limit_request_fields``."""

    code = 431
    reason = "Request Header Fields Too Large"


class HeaderFieldTooLarge(HTTPError):
    """One header field is longer than ``limit_request_field_size``."""

    code = 431
    reason = "Request Header Fields Too Large"


class MissingHost(HTTPError):
    """An HTTP/1.1 request without a Host header."""


class HostMismatch(HTTPError):
    """An absolute-form target whose authority is not the Host header's (RFC 9112 §3.2.2)."""


class ExpectationFailed(HTTPError):
    """An ``Expect`` member other than ``100-continue`` (RFC 9110 §10.1.1)."""

    code = 417
    reason = "Expectation Failed"


class DuplicateHeader(HTTPError):
    """A header that must appear once (Host, Content-Length, Content-Type) appears twice."""


class InvalidContentLength(HTTPError):
    """Content-Length is not 1 to 18 ASCII digits."""


class PayloadTooLarge(HTTPError):
    """The body is larger than ``limit_request_body``: refused before it is read (a declared
    Content-Length) or as soon as the chunked body passes the limit."""

    code = 413
    reason = "Content Too Large"


class ConflictingFraming(HTTPError):
    """Both Transfer-Encoding and Content-Length: a request-smuggling shape."""


class InvalidTransferEncoding(HTTPError):
    """Transfer-Encoding that does not end in exactly one ``chunked``, or on HTTP/1.0."""


class UnsupportedTransferCoding(HTTPError):
    """A well-formed transfer coding other than chunked (gzip, deflate, ...)."""

    code = 501
    reason = "Not Implemented"


class InvalidChunk(HTTPError):
    """Bad chunk size line, extension, or missing CRLF after chunk data."""


class InvalidTrailer(HTTPError):
    """A malformed or forbidden trailer field."""


class IncompleteRequest(HTTPError):
    """The peer closed the connection in the middle of a request."""


class OutsideScriptName(HTTPError):
    """The path is not under the application's mount point (the ``SCRIPT_NAME``
    environment variable, or the one a trusted proxy sent): raised while the environ is
    built. gunicorn 27 refuses the same requests (with ``500 Bad Request``)."""


class InvalidProxyHeader(HTTPError):
    """A malformed PROXY protocol header (v1 text or v2 binary)."""


class HeadTimeout(HTTPError):
    """The request head did not arrive within ``header_timeout`` (raised by the handler)."""

    code = 408
    reason = "Request Timeout"


class BodyTimeout(HTTPError):
    """The request body arrived slower than ``body_min_rate`` (raised by the handler)."""

    code = 408
    reason = "Request Timeout"
