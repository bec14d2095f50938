"""The application of tests/parity/: answers that do not depend on the server, so that
both servers' access-log lines and environs can be compared byte for byte.

- ``/environ...``: the environ as JSON (objects as their kind: ``<input>``, ``<errors>``...).
- ``/status/NNN``: that status, a fixed body.
- anything else: 200, ``hello\\n``, with ``X-App: parity``; POST bodies are read whole.
"""

import json


def _shown(key, value):
    if isinstance(value, str | int | bool | type(None)):
        return value
    if isinstance(value, tuple):
        return list(value)
    return f"<{key}>"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = environ["wsgi.input"].read()
    if path.startswith("/environ"):
        data = {k: _shown(k, v) for k, v in environ.items()}
        data["body"] = body.decode("latin-1")
        out = json.dumps(data, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [out]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        out = b"status\n"
        start_response(f"{code} Status", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        return [out]
    out = b"hello\n"
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(out))), ("X-App", "parity")],
    )
    return [out]
