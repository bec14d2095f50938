"""Misbehaving applications, one per path, to check the server survives each."""

import os


class Closing:
    def __init__(self, items, marker):
        self.items = items
        self.marker = marker

    def __iter__(self):
        return iter(self.items)

    def close(self):
        with open(self.marker, "a") as f:
            f.write("closed\n")


class SlowClose(Closing):
    def close(self):
        import time

        time.sleep(2.0)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/wsgi-errors":
        environ["wsgi.errors"].write(f"wsgi.errors says {environ['QUERY_STRING']}\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"written\n"]
    if path == "/raise":
        raise RuntimeError("boom from the app")
    if path == "/str":
        start_response("200 OK", [])
        return ["not bytes"]
    if path == "/no-start":
        return [b"forgot start_response"]
    if path == "/bad-header":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")])
        return [b"evil"]
    if path == "/raise-late":

        def gen():
            yield b"partial"
            raise RuntimeError("late boom")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/short":
        start_response("200 OK", [("Content-Length", "100")])
        return [b"only a few bytes"]
    if path == "/long":
        start_response("200 OK", [("Content-Length", "4")])
        return [b"0123456789"]
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"a", b"b"], environ.get("HTTP_X_MARKER", os.devnull))
    if path == "/slow-close":  # a large body of known length, then a slow close()
        start_response("200 OK", [("Content-Length", "40000")])
        return SlowClose([b"x" * 40000], os.devnull)
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            import sys

            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"recovered\n"]
    if path == "/stream":

        def gen():
            for i in range(5):
                yield b"chunk %d\n" % i

        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned\n"]
    if path == "/file":
        f = open(environ.get("HTTP_X_FILE", __file__), "rb")  # noqa: SIM115
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
