"""What the server tells its operators: the error log, the access log, StatsD metrics.

Runs in the master and in every worker (each builds the same logger from the settings).
This room never imports the master or the workers: they hand it plain values (a request,
a response, an environ, a duration) and it writes lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from greenhorn.observe.logger import (
    DEFAULT_LOGGER_CLASSES,
    STATSD_LOGGER_CLASSES,
    Logger,
    import_class,
    setting,
)

if TYPE_CHECKING:
    from greenhorn.config import Config

__all__ = ["create"]


def create(cfg: Config) -> Logger:
    """Instantiate the configured ``logger_class`` (gunicorn's rules, statsd included); a
    class written for gunicorn gets gunicorn's ``cfg`` and is adapted (``gunicorn_log``)."""
    spec = setting(cfg, "logger_class")
    statsd_on = setting(cfg, "statsd_host") is not None
    cls: type
    if isinstance(spec, type):
        cls = spec
    elif spec is None or spec in DEFAULT_LOGGER_CLASSES or spec in STATSD_LOGGER_CLASSES:
        if statsd_on or spec in STATSD_LOGGER_CLASSES:
            from greenhorn.observe.statsd import StatsdLogger  # only with --statsd-host

            cls = StatsdLogger
        else:
            cls = Logger
    else:
        cls = import_class(str(spec))
    install = getattr(cls, "install", None)
    if callable(install):
        install()
    from greenhorn.observe.gunicorn_log import GuestLogger, is_gunicorn_logger

    if is_gunicorn_logger(cls):  # built on gunicorn.glogging.Logger: gunicorn's cfg, adapted
        from greenhorn.config.gunicorn_cfg import GunicornConfig

        return GuestLogger(cls(GunicornConfig(cfg)), cfg)
    logger: Logger = cls(cfg)
    return logger
