"""Fixture for the app-loader tests: application factories."""


def create_app(greeting="hello", *, status="200 OK"):
    """Returns a WSGI app that answers `greeting` with `status`; records its arguments."""

    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain")])
        return [greeting.encode()]

    app.args = {"greeting": greeting, "status": status}
    return app


def create_many(*items, **options):
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b""]

    app.args = {"items": items, "options": options}
    return app


def broken_factory():
    raise RuntimeError("database is unreachable")


def returns_none():
    return None


def returns_number():
    return 7


class Api:
    @staticmethod
    def make(name):
        def app(environ, start_response):
            start_response("200 OK", [])
            return [name.encode()]

        return app


api = Api()
