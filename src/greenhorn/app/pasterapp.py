"""The ``paste.server_runner`` entry point: ``pserve app.ini`` serves with greenhorn.

A PasteDeploy file names its server with ``use = egg:greenhorn#main`` (or
``egg:greenhorn``)::

    [server:main]
    use = egg:greenhorn#main
    host = 127.0.0.1
    port = 6543
    workers = 2

As gunicorn's runner does: ``host`` and ``port`` become ``bind`` (``host`` alone may list
several addresses, comma-separated), ``config`` names a greenhorn (or gunicorn) config file
(else ``./greenhorn.conf.py`` or ``./gunicorn.conf.py`` is read when present), every other
key is a setting, the file's ``[loggers]`` section (if any) configures logging, and the
processes are named after the file.
"""

from __future__ import annotations

import configparser
import os

from greenhorn.app.base import BaseApplication, load_config_file

__all__ = ["serve"]


def _has_loggers(path: str) -> bool:
    parser = configparser.ConfigParser()
    parser.read([path])
    return parser.has_section("loggers")


def serve(app: object, global_conf: dict[str, str], **local_conf: str) -> None:
    """Run greenhorn's master serving ``app`` (never returns: exits with its status)."""
    config_file = global_conf.get("__file__", "")
    settings_file = local_conf.pop("config", None)
    host = local_conf.pop("host", "")
    port = local_conf.pop("port", "")
    settings: dict[str, object] = dict(local_conf)
    if host and port:
        settings["bind"] = f"{host}:{port}"
    elif host:
        settings["bind"] = host.split(",")

    class PasteServer(BaseApplication):
        def load_config(self) -> None:
            from greenhorn.config.layers import find_default_config

            if config_file:
                self.cfg.set("default_proc_name", config_file)
                if _has_loggers(config_file):
                    self.cfg.set("logconfig", config_file)
            location = settings_file or find_default_config(os.getcwd())
            if location is not None:
                load_config_file(self.cfg, location)
            for name, value in settings.items():
                if value is not None:
                    self.cfg.set(name.lower(), value)

        def load(self) -> object:
            return app

    PasteServer().run()
