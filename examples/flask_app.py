"""A small Flask application served by greenhorn.

    pip install flask
    greenhorn --chdir examples flask_app:app

greenhorn needs nothing Flask-specific: ``app`` is a WSGI callable. Behind a proxy listed in
``forwarded_allow_ips``, greenhorn already sets ``wsgi.url_scheme`` from X-Forwarded-Proto,
so ``request.scheme`` and ``url_for(..., _external=True)`` are right without ProxyFix.
"""

import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask on greenhorn!\n"


@app.get("/info")
def info():
    """What the application sees of the request, as JSON."""
    return jsonify(
        scheme=request.scheme,
        host=request.host,
        path=request.path,
        args=request.args.to_dict(),
        remote_addr=request.remote_addr,
        forwarded_for=request.headers.get("X-Forwarded-For"),
        server=request.environ.get("SERVER_SOFTWARE"),
        pid=os.getpid(),
    )


@app.post("/echo")
def echo():
    """Read the whole request body and return its size and a prefix."""
    data = request.get_data()
    return jsonify(length=len(data), start=data[:32].decode("latin-1"))
