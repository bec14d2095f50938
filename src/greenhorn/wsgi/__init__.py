"""PEP 3333 in the worker: the application, its environ, ``wsgi.input`` and the response.

Runs in the worker that serves the request (and app loading also in the master with
``--preload`` or ``--check-config``). It knows nothing of how bytes arrive: the connection
is given to it as an object with a few attributes, and it never imports the workers or the
master.
"""
