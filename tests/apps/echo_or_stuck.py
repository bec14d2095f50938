"""``/stuck?t=SECONDS`` sleeps (slow.py), everything else is echoed (echo.py): one app for
the nginx test, which proxies both."""

from echo import app as echo
from slow import app as slow


def app(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        return slow(environ, start_response)
    return echo(environ, start_response)
