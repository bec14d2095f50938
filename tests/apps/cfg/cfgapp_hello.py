"""Fixture for the app-loader and CLI tests: plain WSGI callables in every shape."""


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


application = _hello  # found by `cfgapp_hello` (gunicorn's default attribute)
app = _hello


class _Holder:
    """`cfgapp_hello:holder.inner.app`: a dotted attribute path."""

    def __init__(self, depth):
        self.app = _hello
        self.inner = _Holder(depth - 1) if depth else None


holder = _Holder(1)
not_callable = 42
