"""The asgi worker (``-k asgi``): an asyncio event loop serving an ASGI application.

Split by job: ``worker.py`` (the process: loop, accepting, sweep, stop, watchdog),
``connection.py`` (one HTTP/1.1 connection), ``cycle.py`` (one request: the
application's ``receive``/``send``), ``websocket.py`` (one WebSocket), ``http2.py`` (an
HTTP/2 connection, each stream a request), ``shared.py`` (what they all read). The ASGI contract itself (app shape, scopes, lifespan) is in ``asgi/``.
"""
