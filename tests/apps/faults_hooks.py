"""Request hooks that fail on demand (see faults.py): ``/pre-raise`` and ``/pre-exit`` make
``pre_request`` raise RuntimeError or SystemExit, ``/post-...`` the same for
``post_request``."""

import sys


def _fail(path, when):
    if path == f"/{when}-raise":
        raise RuntimeError(f"{when}_request hook failed")
    if path == f"/{when}-exit":
        sys.exit(3)


def pre_request(worker, req):
    _fail(req.path, "pre")


def post_request(worker, req, environ, resp):
    _fail(req.path, "post")
