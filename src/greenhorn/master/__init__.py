"""The master process: everything that runs in the arbiter and nowhere else.

The master opens the listening sockets, forks the workers, watches them through their
scoreboards and signals, and serves its own small endpoints (Prometheus metrics, the
``greenhorn ctl`` control socket). It never serves a request. Code here may import every
other room; nothing outside ``cli.py`` and ``ctl.py`` imports it (workers never do).
"""
