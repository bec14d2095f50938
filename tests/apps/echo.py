"""Echo the request back: method, path, selected environ keys and the body."""

import json


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    keys = (
        "REQUEST_METHOD",
        "PATH_INFO",
        "QUERY_STRING",
        "RAW_URI",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "SERVER_NAME",
        "SERVER_PORT",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SCRIPT_NAME",
        "REMOTE_USER",
        "wsgi.url_scheme",
        "HTTP_HOST",
    )
    info = {k: environ.get(k) for k in keys}
    info["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    info["body_len"] = len(body)
    info["pid"] = __import__("os").getpid()
    data = json.dumps(info).encode() + b"\n" + body
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
