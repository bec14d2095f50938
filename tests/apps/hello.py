"""The smallest WSGI app: used by most end-to-end tests and by the benchmarks."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!\n"]


application = app
