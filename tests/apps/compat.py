"""For the gunicorn-compatibility tests: an app that reports what a gunicorn user checks
(wsgi.multiprocess, wsgi.multithread, the request headers), and a worker class defined in
an application module (``-k compat:TaggedWorker``, gunicorn's ``module:Class`` spelling)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from greenhorn.workers.sync import SyncWorker


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    info = {
        "multiprocess": environ["wsgi.multiprocess"],
        "multithread": environ["wsgi.multithread"],
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
    }
    data = json.dumps(info, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def paste_factory(global_conf: dict[str, str], **local_conf: str) -> Callable[..., Any]:
    """A PasteDeploy app factory (``use = call:compat:paste_factory``): the app says its
    ``greeting`` (from its ini section) and the ``FOO`` global (``--paste-global``)."""
    text = f"{local_conf.get('greeting')} {global_conf.get('FOO')}\n".encode()

    def paste_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text]

    return paste_app


class TaggedWorker(SyncWorker):
    """A sync worker that says which class it is when it starts serving."""

    def run(self) -> None:
        self.log.info("TaggedWorker %s serving", self.pid)
        super().run()
