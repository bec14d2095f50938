"""A log that cannot be written: reported once, counted, and tried again later.

Why a module of its own: on a full disk (or a log on a closed pipe, a vanished NFS mount)
every write to a log fails. The ``logging`` module reports each failure with a traceback
on stderr, and greenhorn used to report each failed access line with a traceback on the
error log: one fault became a flood, often on the same full disk. Here each log target
greenhorn opens (the access and error log, a file or a stream) has its ``WriteFailures``:

- the first failure is reported once, on the error log for the access log, or on stderr
  for the error log itself (nowhere, when the error log *is* stderr);
- while it fails, lines are counted, not written, and writing is tried again every
  ``RETRY_SECONDS``;
- when a try works, one line says so with the number of lines lost; a process that exits
  while its log still fails reports the count on its way out.

``LogFile`` and ``LogStream`` are the ``logging`` handlers that keep this record; the
access log's fast path (``Logger._write_direct``) uses the same record.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["RETRY_SECONDS", "LogFile", "LogStream", "WriteFailures", "to_stderr"]

RETRY_SECONDS = 2.0
_monotonic = time.monotonic


class WriteFailures:
    """The write failures of one log target (see the module docstring)."""

    __slots__ = ("_exit_pid", "errors", "lost", "name", "report", "retry_at")

    def __init__(self, name: str, report: Callable[[str], None] | None) -> None:
        self.name = name  # "the access log /var/log/app/access.log"
        self.report = report  # where to say it (None: nowhere)
        self.retry_at = 0.0  # while failing: when to try writing again (monotonic); else 0
        self.lost = 0  # lines not written since the failure began
        self.errors = 0  # failed writes, ever
        self._exit_pid = 0  # the process that will report the count at exit

    def skip(self, now: float) -> bool:
        """While failing and before the next try: count the line as lost, do not write."""
        if now < self.retry_at:
            self.lost += 1
            return True
        return False

    def failed(self, exc: BaseException, now: float) -> None:
        """A write failed: report it if it is the first since the log last worked."""
        self.errors += 1
        self.lost += 1
        first = not self.retry_at
        self.retry_at = now + RETRY_SECONDS
        if not first:
            return
        self._say(
            f"Cannot write {self.name}: {exc}. Its lines are dropped and counted; "
            f"writing is tried again every {RETRY_SECONDS:g}s."
        )
        if self._exit_pid != os.getpid():
            self._exit_pid = os.getpid()
            atexit.register(self.at_exit, self._exit_pid)

    def worked(self) -> None:
        """A write worked: if the log was failing, say that it is back and what was lost."""
        if not self.retry_at:
            return
        lost, self.lost, self.retry_at = self.lost, 0, 0.0
        self._say(f"Writing {self.name} works again; {lost} line(s) were lost.")

    def at_exit(self, pid: int) -> None:
        """On the way out of the process: the lines lost since the log began failing."""
        if pid == os.getpid() and self.retry_at and self.lost:
            self._say(f"{self.lost} line(s) could not be written to {self.name}.")

    def _say(self, message: str) -> None:
        if self.report is None:
            return
        try:
            self.report(message)
        except Exception:  # the report's own target fails too: the count still stands
            pass


class LogStream(logging.StreamHandler[TextIO]):
    """A stream handler (stderr, stdout) whose write failures are ``WriteFailures``."""

    def __init__(self, stream: TextIO, failures: WriteFailures) -> None:
        super().__init__(stream)
        self.failures = failures

    def emit(self, record: logging.LogRecord) -> None:
        _emit(self.failures, record, super().emit)

    def handleError(self, record: logging.LogRecord) -> None:
        _handle_error(self.failures, record, super().handleError)


class LogFile(logging.FileHandler):
    """A file handler whose write failures are ``WriteFailures``."""

    def __init__(self, path: str, failures: WriteFailures) -> None:
        super().__init__(path, encoding="utf-8", errors="backslashreplace")
        self.failures = failures

    def emit(self, record: logging.LogRecord) -> None:
        _emit(self.failures, record, super().emit)

    def handleError(self, record: logging.LogRecord) -> None:
        _handle_error(self.failures, record, super().handleError)


def _emit(
    failures: WriteFailures,
    record: logging.LogRecord,
    emit: Callable[[logging.LogRecord], None],
) -> None:
    if not failures.retry_at:  # the common case: the log works
        emit(record)
        return
    if failures.skip(_monotonic()):
        return
    errors = failures.errors
    emit(record)  # a failure comes back through handleError
    if failures.errors == errors:
        failures.worked()


def _handle_error(
    failures: WriteFailures,
    record: logging.LogRecord,
    fallback: Callable[[logging.LogRecord], None],
) -> None:
    exc = sys.exc_info()[1]
    if isinstance(exc, OSError):
        failures.failed(exc, _monotonic())
    else:  # not a write failure (a bad format string...): logging's own report
        fallback(record)


def to_stderr(message: str) -> None:
    """Report a failure of the error log on stderr (one line, no traceback)."""
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"greenhorn: {message}\n")
    stream.flush()
