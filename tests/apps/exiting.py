"""An application that ends its own worker process: ``/exit/N`` calls ``os._exit(N)`` in the
middle of a request (any other path answers 200 with the worker's pid).

Used to check that the master tells a worker that exits after it booted (replace it) from
one that failed to boot (stop the server), whatever the exit status."""

import os


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/exit/"):
        os._exit(int(path.rsplit("/", 1)[1]))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
