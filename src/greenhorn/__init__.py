"""greenhorn: a pre-fork WSGI HTTP server with gunicorn's model, stricter and faster."""

__version__ = "0.1.0"
SERVER_SOFTWARE = f"greenhorn/{__version__}"

__all__ = ["SERVER_SOFTWARE", "__version__"]
