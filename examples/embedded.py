"""Start greenhorn from Python (docs/embedding.md): gunicorn's custom-application pattern,
with the import changed from ``gunicorn.app.base`` to ``greenhorn.app.base``.

    python examples/embedded.py            # http://127.0.0.1:8000, two workers

``BIND`` and ``WORKERS`` in the environment change the address and the worker count.
"""

import os

from greenhorn.app.base import BaseApplication


def app(environ, start_response):
    body = f"Hello from an embedded greenhorn (pid {os.getpid()})\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class StandaloneApplication(BaseApplication):
    def __init__(self, application, options=None):
        self.options = options or {}
        self.application = application
        super().__init__()

    def load_config(self):
        config = {
            key: value
            for key, value in self.options.items()
            if key in self.cfg.settings and value is not None
        }
        for key, value in config.items():
            self.cfg.set(key.lower(), value)

    def load(self):
        return self.application


if __name__ == "__main__":
    options = {
        "bind": os.environ.get("BIND", "127.0.0.1:8000"),
        "workers": int(os.environ.get("WORKERS", "2")),
        "accesslog": "-",
    }
    StandaloneApplication(app, options).run()
