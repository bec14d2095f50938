"""103 Early Hints from a WSGI application (``environ['wsgi.early_hints']``, gunicorn 25+)."""


def app(environ, start_response):
    hints = environ.get("wsgi.early_hints")
    path = environ["PATH_INFO"]
    if hints is None:
        body = b"no wsgi.early_hints\n"
    elif path == "/bad":
        hints([("Link", "</a.css>\r\nInjected: yes")])  # must never reach the wire
        body = b"unreachable\n"
    else:
        hints([("Link", "</style.css>; rel=preload; as=style")])
        hints([(b"Link", b"</app.js>; rel=preload; as=script")])  # bytes work too; twice is fine
        body = b"after hints\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
