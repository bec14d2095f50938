"""The Python API: start greenhorn from Python, as gunicorn's ``gunicorn.app`` does.

Runs in: the process that embeds greenhorn, which then becomes the master. ``base.py`` has
``BaseApplication`` and ``Application`` (gunicorn's custom-application pattern works by
changing the import), ``wsgiapp.py`` the command-line application (``greenhorn.app.wsgiapp``),
``pasterapp.py`` the ``paste.server_runner`` entry point (``pserve``). Nothing in greenhorn
imports this room: it sits on top of the master, as the command line does.
"""
