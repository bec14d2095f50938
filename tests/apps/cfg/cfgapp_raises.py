"""Fixture: importing this module raises."""

raise ValueError("settings module is misconfigured")
