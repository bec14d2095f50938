"""Answers with the names of the modules loaded in the worker, one per line."""

import sys


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(sorted(sys.modules)).encode()]
