"""Worker heartbeat and scoreboard: one unlinked temp file per worker, shared with the master.

Why: the master must know, without any per-request message, (1) whether a worker's loop is
still turning and (2) what each worker is doing right now, so that a hung worker can be killed
with the request it was stuck on named in the log, and so that metrics and ``greenhorn ctl``
can show a live worker table.

How: the master creates the file in ``worker_tmp_dir`` (``/dev/shm`` when usable, so a busy
disk cannot block the heartbeat — gunicorn #1863) before forking, unlinks it at once, and maps
it ``MAP_SHARED``. Both processes keep the mapping.

- Heartbeat = the file's mtime. The worker's *request loop* calls ``beat()`` (``os.utime``)
  every ``BEAT_PERIOD`` seconds, waking at least that often; the master ``fstat``s. A side
  thread never beats, so a hung loop is seen as hung. A healthy loop's last beat is at most
  ``BEAT_SLACK`` old, which the master adds to ``timeout`` before it calls a silent loop
  stuck: a loop is never aborted before it has been stuck for ``timeout`` seconds.
- Scoreboard = plain integers and doubles in the mapping, written by the worker with
  single-word stores (no locks: the master only reads, and a torn read of a counter is off by
  at most one request). Per-thread slots hold the request in flight and when it started.
  The sync worker keeps its request counters in private memory and adds them to the mapping
  when it goes idle, once a second and at exit; a slot's request line is rewritten only when
  it changed, its start time always (a hung request must be visible). Updating the shared
  counters and the whole slot on every request measured ~10% of a hello request's CPU under
  load (A/B, 2 x 12 rounds), although it takes a microsecond when timed alone.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import time
from bisect import bisect_left
from typing import TypedDict

__all__ = [
    "BEAT_PERIOD",
    "BEAT_SLACK",
    "BoardSnapshot",
    "Scoreboard",
    "WorkerTmp",
    "choose_tmp_dir",
    "system_tmp_dir",
    "unlinked_file",
]

BEAT_PERIOD = 0.5  # seconds between two heartbeats of a loop that is turning
BEAT_SLACK = 2 * BEAT_PERIOD  # how old a turning loop's last beat can be (a wait, then a beat)

# Counters (unsigned 64-bit) at the start of the mapping.
OTHER_STATUS = 0  # responses with a status outside 1xx-5xx (an application's 6xx...)
STATUS_1XX = 1  # ... STATUS_5XX = 5: responses by status class
IN_FLIGHT = 6  # requests in flight that hold no slot (the asgi worker's gauge, ~4x a second)
BOOTED = 7  # 1 once post_worker_init has run (the worker is ready)
DRAIN = 8  # set by the master before a stop: accept the backlog, then close listeners
# ... with this value the stop is final (no other master shares the sockets): stop the port
DRAIN_FINAL = 2
REJECTED = 9  # requests refused by the parser (4xx/5xx before the app)
BYTES_OUT = 10
RELOAD = 11  # set by a worker (--reload saw a change): the master reloads once
EXIT_REASON = 12  # why a worker is leaving on its own: 1 = max_requests reached
WS_OPEN = 13  # WebSocket connections open now (a gauge, written by the asgi worker)
WS_TOTAL = 14  # WebSocket connections accepted since the worker started
HIST_BASE = 16  # request duration histogram, one counter per bucket
# Upper bounds (seconds) of the duration histogram buckets; the last is +Inf.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")  # counters STATUS_1XX ... 5
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
_FIRST_BUCKET = BUCKETS[0]
DURATION_SUM = 32  # float64 index in the double view: total seconds spent in requests
N_COUNTERS = 40
HEADER_SIZE = N_COUNTERS * 8

SLOT_LINE = 240  # bytes of "METHOD target" kept per slot
SLOT_SIZE = 16 + SLOT_LINE  # started_at (double), line length (u64), line bytes
_SLOT_HEAD = struct.Struct("=dQ")
_SLOT = struct.Struct(f"=dQ{SLOT_LINE}s")  # the whole slot, written in one call


def choose_tmp_dir(configured: str | None) -> str | None:
    """``worker_tmp_dir`` if set, else ``/dev/shm`` when writable, else the system default."""
    if configured:
        return configured
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def system_tmp_dir() -> str:
    """The directory ``tempfile.gettempdir()`` picks in practice: the first writable one of
    $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp, else the working directory; found
    without importing ``tempfile`` (see ``unlinked_file``)."""
    candidates = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
    for path in [*candidates, "/tmp", "/var/tmp", "/usr/tmp"]:
        if path and os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK):
            return os.path.abspath(path)
    return os.getcwd()


def unlinked_file(tmp_dir: str | None) -> int:
    """A new private (0600) file in ``tmp_dir`` (the system's temp dir when None), already
    unlinked: ``O_TMPFILE`` where the file system has it, else a random name removed at once.

    Not ``tempfile.mkstemp``: ``tempfile`` imports ``shutil`` and with it the bz2 and lzma
    libraries, about 0.6 MiB in the master that every worker shares (PSS)."""
    if tmp_dir is None:
        tmp_dir = system_tmp_dir()
    flags = os.O_RDWR | os.O_CLOEXEC
    if hasattr(os, "O_TMPFILE"):
        try:
            return os.open(tmp_dir, flags | os.O_TMPFILE, 0o600)
        except OSError as exc:  # a file system without O_TMPFILE (or an old kernel)
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    flags |= os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        name = os.path.join(tmp_dir, f"greenhorn-{os.urandom(8).hex()}")
        try:
            fd = os.open(name, flags, 0o600)
        except FileExistsError:
            continue
        os.unlink(name)
        return fd
    raise FileExistsError(errno.EEXIST, "no free temporary file name", tmp_dir)


class BoardSnapshot(TypedDict):
    """One scoreboard read at once (``Scoreboard.snapshot``)."""

    requests: int
    status: dict[str, int]  # "1xx" ... "5xx"
    in_flight: int
    booted: bool
    rejected: int
    bytes_out: int
    websockets_open: int
    websockets_total: int
    histogram: list[int]  # one count per BUCKETS entry
    duration_sum: float


class Scoreboard:
    """The shared-memory view of one worker (also readable by the master).

    A single-threaded worker may ``buffer()`` its request counters: they then add up in
    private memory and reach the mapping on ``flush()`` (when the worker goes idle, once a
    second with the heartbeat, and at exit), which costs far less under load than
    touching the shared page on every request. The slots stay live either way.
    """

    __slots__ = ("_lines", "_mm", "_starts", "_tally", "_tally_sum", "counters", "doubles", "slots")

    def __init__(self, mm: mmap.mmap, slots: int) -> None:
        self._mm = mm
        view = memoryview(mm)
        self.counters = view[:HEADER_SIZE].cast("Q")
        self.doubles = view[:HEADER_SIZE].cast("d")
        self._starts = view.cast("d")  # a slot's started_at is at (its offset // 8)
        self.slots = slots
        self._lines: list[tuple[str, str] | None] = [None] * slots  # written to each slot
        self._tally: list[int] | None = None  # buffered counters, see buffer()
        self._tally_sum = 0.0

    def buffer(self) -> None:
        """Keep request counters privately until ``flush()`` (one thread only)."""
        if self._tally is None:
            self._tally = [0] * N_COUNTERS

    def flush(self) -> None:
        """Add the buffered counters to the shared ones."""
        tally = self._tally
        if not tally or not any(tally):  # every request counts in a status class
            return
        c = self.counters
        for i, n in enumerate(tally):
            if n:
                c[i] += n
                tally[i] = 0
        self.doubles[DURATION_SUM] += self._tally_sum
        self._tally_sum = 0.0

    # -- worker side ---------------------------------------------------------------------

    def start(self, slot: int, method: str, uri: str, now: float) -> None:
        """Record the request now in flight in ``slot`` (monotonic ``now``)."""
        if self._lines[slot] == (method, uri):  # the same line as last time: only the time
            self._starts[(HEADER_SIZE + slot * SLOT_SIZE) >> 3] = now
            return
        self._lines[slot] = (method, uri)
        line = (method + " " + uri).encode("latin-1", "replace")
        _SLOT.pack_into(self._mm, HEADER_SIZE + slot * SLOT_SIZE, now, len(line), line)

    def finish(self, slot: int, status: int, duration: float, sent: int) -> None:
        """Clear ``slot`` and count a completed request (by status class, size, duration)."""
        self._starts[(HEADER_SIZE + slot * SLOT_SIZE) >> 3] = 0.0  # the line stays for start
        c: list[int] | memoryview[int] | None = self._tally  # count(), inlined: the hot path
        if c is None:
            c = self.counters
            self.doubles[DURATION_SUM] += duration
        else:
            self._tally_sum += duration
        klass = status // 100
        c[klass if klass <= 5 else OTHER_STATUS] += 1
        c[BYTES_OUT] += sent
        c[HIST_BASE + (0 if duration <= _FIRST_BUCKET else bisect_left(BUCKETS, duration))] += 1

    def clear(self, slot: int) -> None:
        """Mark ``slot`` free without counting anything."""
        self._starts[(HEADER_SIZE + slot * SLOT_SIZE) >> 3] = 0.0

    def count(self, status: int, duration: float, sent: int) -> None:
        """Count a completed request that held no slot (by status class, size, duration)."""
        c: list[int] | memoryview[int] | None = self._tally
        if c is None:
            c = self.counters
            self.doubles[DURATION_SUM] += duration
        else:
            self._tally_sum += duration
        klass = status // 100
        c[klass if klass <= 5 else OTHER_STATUS] += 1
        c[BYTES_OUT] += sent
        c[HIST_BASE + (0 if duration <= _FIRST_BUCKET else bisect_left(BUCKETS, duration))] += 1

    def requests(self) -> int:
        """Requests completed (every one is counted in exactly one status class)."""
        c = self.counters
        return c[1] + c[2] + c[3] + c[4] + c[5] + c[OTHER_STATUS]

    def in_flight(self) -> int:
        """Requests being served now in slots (slots with a start time)."""
        mm = self._mm
        return sum(
            1
            for slot in range(self.slots)
            if _SLOT_HEAD.unpack_from(mm, HEADER_SIZE + slot * SLOT_SIZE)[0]
        )

    # -- master side ---------------------------------------------------------------------

    def current(self) -> list[tuple[int, float, str]]:
        """Requests in flight: (slot, started_at monotonic, "METHOD target")."""
        out = []
        for slot in range(self.slots):
            off = HEADER_SIZE + slot * SLOT_SIZE
            started, n = _SLOT_HEAD.unpack_from(self._mm, off)
            if started:
                line = bytes(self._mm[off + 16 : off + 16 + min(n, SLOT_LINE)])
                out.append((slot, started, line.decode("latin-1")))
        return out

    def oldest_request(self) -> tuple[float, str] | None:
        """(started_at, line) of the longest-running request in flight, if any."""
        current = self.current()
        if not current:
            return None
        _, started, line = min(current, key=lambda item: item[1])
        return started, line

    def snapshot(self) -> BoardSnapshot:
        """The counters and the number of requests in flight, as plain values."""
        c = self.counters
        return {
            "requests": self.requests(),
            "status": {name: c[k] for k, name in enumerate(STATUS_CLASSES, STATUS_1XX)},
            "in_flight": self.in_flight() + c[IN_FLIGHT],  # IN_FLIGHT: requests without slots
            "booted": bool(c[BOOTED]),
            "rejected": c[REJECTED],
            "bytes_out": c[BYTES_OUT],
            "websockets_open": c[WS_OPEN],
            "websockets_total": c[WS_TOTAL],
            "histogram": [c[HIST_BASE + i] for i in range(len(BUCKETS))],
            "duration_sum": self.doubles[DURATION_SUM],
        }

    def close(self) -> None:
        self.counters.release()
        self.doubles.release()
        self._starts.release()
        self._mm.close()


class WorkerTmp:
    """The heartbeat file of one worker plus its scoreboard mapping."""

    __slots__ = ("_fd", "board", "last_beat")

    def __init__(self, tmp_dir: str | None, slots: int = 1) -> None:
        fd = unlinked_file(tmp_dir)
        try:
            size = HEADER_SIZE + max(1, slots) * SLOT_SIZE
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        os.set_inheritable(fd, False)
        self._fd = fd
        self.board = Scoreboard(mm, max(1, slots))
        self.last_beat = 0.0

    def fileno(self) -> int:
        return self._fd

    def beat(self, now: float | None = None) -> None:
        """Touch the file (worker side). Callers throttle; this always writes."""
        os.utime(self._fd)
        self.last_beat = time.monotonic() if now is None else now

    def notify(self) -> None:
        """gunicorn's name for a beat (``worker.tmp.notify()`` in hooks written for it)."""
        self.beat()

    def last_update(self) -> float:
        """Seconds since the epoch of the last beat (master side)."""
        return os.fstat(self._fd).st_mtime

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.board.close()
            except (BufferError, ValueError):
                pass
            os.close(self._fd)
            self._fd = -1
