"""Sleep for ?t=seconds (default 1) before answering; reports the worker pid."""

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    seconds = float(qs.get("t", ["1"])[0])
    if environ["PATH_INFO"] == "/spin":
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    else:
        time.sleep(seconds)
    body = f"slept {seconds} in {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
