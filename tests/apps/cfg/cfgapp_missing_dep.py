"""Fixture: importing this module fails because a dependency is missing."""

import cfgapp_no_such_dependency  # noqa: F401

application = None
