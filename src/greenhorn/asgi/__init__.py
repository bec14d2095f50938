"""The ASGI contract in the worker: the application's shape, its scopes, lifespan.

Runs in each ``asgi`` worker. Like ``wsgi/`` it knows nothing of how bytes arrive: the
worker (``workers/asgi*.py``) owns the event loop, the sockets and the request cycle, and
asks this room for what ASGI itself defines: whether an application is ASGI 3 or 2 (and a
wrapper for 2), the ``scope`` dicts and their header lists, and the lifespan protocol. It
never imports the workers or the master.
"""
