"""The worker processes: the child's life after ``fork()`` and the connection handler.

Everything here runs in a worker (the master only imports the registry, to pick the class,
and a worker type's ``setup()``). Worker types decide *when* a connection is served (one at
a time, a thread pool, greenlets); ``handler.py`` serves it. Workers never import the master.
"""
