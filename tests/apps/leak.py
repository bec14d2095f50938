"""Allocates ?mb= megabytes (default 20) per request and keeps them: memory recycling tests."""

import os
from urllib.parse import parse_qs

HOARD = []


def app(environ, start_response):
    mb = int(parse_qs(environ.get("QUERY_STRING", "")).get("mb", ["20"])[0])
    HOARD.append(bytearray(mb * 1024 * 1024))
    body = f"{os.getpid()} holds {len(HOARD) * mb} MiB\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
