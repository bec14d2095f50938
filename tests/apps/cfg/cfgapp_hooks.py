"""Fixture: hook functions referenced by dotted path from config files."""

CALLS = []


def on_starting(server):
    CALLS.append(("on_starting", server))


def two_args(server, worker):
    CALLS.append(("two_args", server, worker))
