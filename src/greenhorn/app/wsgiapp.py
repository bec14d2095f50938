"""``greenhorn.app.wsgiapp``: the command line as an application class (gunicorn's module of
the same name). ``python -m greenhorn.app.wsgiapp myapp:app -w 4`` runs like ``greenhorn``;
``WSGIApplication`` can be subclassed to add settings (``init``) or load the application
another way (``load``)."""

from __future__ import annotations

from greenhorn.app.base import (
    BaseApplication,
    change_directory,
    command_line_settings,
    load_config_file,
    run_checks,
)
from greenhorn.config import ConfigError

__all__ = ["WSGIApplication", "run"]


class WSGIApplication(BaseApplication):
    """APP_MODULE (or ``--paste``) from the command line, the environment or the config
    file; ``load()`` imports it in each worker (in the master with ``--preload``). It does
    what ``greenhorn.app.base.Application`` does (``init``, ``chdir``,
    ``load_config_from_file``, ``--print-config``/``--check-config``)."""

    app_uri: str | None = None

    def chdir(self) -> None:
        change_directory(self.cfg)

    def load_config_from_file(self, filename: str) -> dict[str, object]:
        return load_config_file(self.cfg, filename)

    def run(self) -> None:
        run_checks(self)
        super().run()

    def load_config(self) -> None:
        command_line_settings(self)
        wsgi_app = self.cfg.wsgi_app
        paste = self.cfg.paste
        self.app_uri = (
            str(paste if paste is not None else wsgi_app) if (wsgi_app or paste) else None
        )
        if self.app_uri is None:
            raise ConfigError("No application module specified.")

    def load(self) -> object:
        from greenhorn.wsgi.app import load_configured_app

        return load_configured_app(self.frozen or self.cfg.freeze())


def run(prog: str | None = None) -> None:
    """The ``greenhorn`` command line as an application (never returns)."""
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog=prog).run()


if __name__ == "__main__":
    run()
