"""Config file (for greenhorn and gunicorn alike): every server hook appends one JSON line
to $HOOK_LOG saying what it received: which gunicorn public attributes the server, worker
and request objects lack, the worker's class, nworkers_changed's values, whether
worker_exit got the server. tests/e2e/test_hooks_parity.py and tests/parity/ read it."""

import json
import os

WORKER_ATTRS = [
    "age",
    "pid",
    "ppid",
    "sockets",
    "app",
    "timeout",
    "cfg",
    "log",
    "alive",
    "booted",
    "aborted",
    "tmp",
]
REQUEST_ATTRS = [
    "method",
    "uri",
    "path",
    "query",
    "fragment",
    "version",
    "headers",
    "trailers",
    "body",
    "scheme",
    "peer_addr",
    "remote_addr",
    "req_number",
]
SERVER_ATTRS = [
    "cfg",
    "log",
    "pid",
    "timeout",
    "num_workers",
    "master_name",
    "WORKERS",
    "LISTENERS",
]


def _missing(obj, names):
    return [n for n in names if not hasattr(obj, n)]


def _write(hook, **fields):
    path = os.environ.get("HOOK_LOG")
    if not path:
        return
    line = json.dumps({"hook": hook, "pid": os.getpid(), **fields}, default=str)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _server(server):
    return {"server_missing": _missing(server, SERVER_ATTRS)}


def _worker(worker):
    missing = _missing(worker, WORKER_ATTRS)
    if not callable(getattr(worker, "notify", None)):
        missing.append("notify()")
    tmp = getattr(worker, "tmp", None)
    if tmp is not None and not callable(getattr(tmp, "notify", None)):
        missing.append("tmp.notify()")
    return {"worker_class": type(worker).__name__, "worker_missing": missing}


def on_starting(server):
    _write("on_starting", **_server(server))


def when_ready(server):
    _write("when_ready", **_server(server))


def on_reload(server):
    _write("on_reload", **_server(server))


def pre_fork(server, worker):
    _write("pre_fork", **_server(server), **_worker(worker))


def post_fork(server, worker):
    _write("post_fork", **_server(server), **_worker(worker))


def post_worker_init(worker):
    _write("post_worker_init", **_worker(worker))


def worker_int(worker):
    _write("worker_int", **_worker(worker))


def worker_abort(worker):
    _write("worker_abort", **_worker(worker))


def pre_request(worker, req):
    req.seen_by_pre_request = True  # hooks keep their own state on the request
    _write(
        "pre_request",
        path=req.path,
        request_missing=_missing(req, REQUEST_ATTRS),
        req_number=getattr(req, "req_number", None),
        scheme=getattr(req, "scheme", None),
        peer_is_address=isinstance(getattr(req, "peer_addr", None), tuple),
    )


def post_request(worker, req, environ, resp):
    _write(
        "post_request",
        path=req.path,
        status=str(getattr(resp, "status", "")),
        req_number=getattr(req, "req_number", None),
        trailers=[list(t) for t in getattr(req, "trailers", None) or []],
        kept_state=getattr(req, "seen_by_pre_request", False),
    )


def child_exit(server, worker):
    _write("child_exit", **_server(server), **_worker(worker))


def worker_exit(server, worker):
    _write("worker_exit", server_is_none=server is None, **_worker(worker))


def nworkers_changed(server, new_value, old_value):
    _write("nworkers_changed", new=new_value, old=old_value)


def on_exit(server):
    _write("on_exit", **_server(server))
