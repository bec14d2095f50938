"""Return every string value of the WSGI environ as JSON (for the PROXY/forwarded tests)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    info = {k: v for k, v in environ.items() if isinstance(v, str)}
    data = json.dumps(info, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
