"""WebSocket framing cost per message: greenhorn.http.websocket against wsproto, same run.

Why: issue 23 says to use wsproto for the ASGI worker's WebSockets, or our own framing if a
benchmark shows it is worth it. This is that benchmark. It times what a server does for each
message of an echo: the client's masked frame in, the message event out, the reply frame
serialized. Sockets, the event loop and the application are left out: they cost the same
whichever framing is used.

Cases (the same client bytes for both sides, built once with a fixed mask):

- ``text_small``: a 34-byte text message (a chat line, a JSON ping);
- ``binary_16k``: a 16 KiB binary message (16-bit length, a big unmask);
- ``text_burst``: 32 small text messages arriving in one read (a busy client);
- ``deflate_text_1k``: a 1 KiB JSON-like text message with permessage-deflate on both
  sides (each compresses the reply and inflates the request, context takeover).

The two sides:

- greenhorn: ``FrameReader.feed`` + ``next_event`` until it is None, and ``FrameWriter.text``
  or ``.binary`` for the reply;
- wsproto: ``wsproto.connection.Connection(SERVER)`` (the object a wsproto server holds after
  the handshake): ``receive_data`` + ``events()``, and ``send(TextMessage/BytesMessage)``.

Samples are taken A B A B; the figure per side is the best sample (other work on the machine
only adds time), the median is shown too. The ratio is wsproto / greenhorn: above 1 means
greenhorn is cheaper. It needs wsproto importable (``pip install wsproto``; the dev extra
has it). Run::

    python benchmarks/websocket_framing.py [--samples 15] [--messages 20000]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))

MASK = b"\x37\xfa\x21\x3d"
SMALL_TEXT = '{"type": "chat", "text": "hello!"}'  # 34 bytes
BINARY_16K = bytes(range(256)) * 64
DEFLATE_TEXT = ('{"id": %d, "user": "alice", "items": [1, 2, 3], "ok": true} ' * 16)[:1024]
BURST = 32


def client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One masked client frame (FIN set), as a browser sends it."""
    n = len(payload)
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + n.to_bytes(8, "big")
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


def deflate_stream(messages: list[bytes]) -> list[bytes]:
    """The compressed payloads a client with context takeover sends for ``messages``."""
    import zlib

    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = []
    for m in messages:
        data = comp.compress(m) + comp.flush(zlib.Z_SYNC_FLUSH)
        out.append(data[:-4])
    return out


class Case:
    """A workload: the client bytes for each step and how many messages a step carries."""

    def __init__(self, name: str, steps: list[bytes], per_step: int, text: bool) -> None:
        self.name = name
        self.steps = steps
        self.per_step = per_step
        self.text = text


def build_cases(messages: int) -> list[Case]:
    small = client_frame(1, SMALL_TEXT.encode())
    big = client_frame(2, BINARY_16K)
    burst = small * BURST
    # deflate: a stream of distinct messages, compressed with context takeover in order
    plain = [(DEFLATE_TEXT.replace("%d", str(i))).encode() for i in range(messages)]
    deflated = [client_frame(1, p, rsv1=True) for p in deflate_stream(plain)]
    return [
        Case("text_small", [small], 1, True),
        Case("binary_16k", [big], 1, False),
        Case("text_burst", [burst], BURST, True),
        Case("deflate_text_1k", deflated, 1, True),
    ]


# -- the two sides -----------------------------------------------------------------------------


def greenhorn_runner(case: Case, messages: int) -> Callable[[], float]:
    try:
        import greenhorn  # noqa: F401
    except ImportError:  # a checkout that is not installed
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    from greenhorn.http.websocket import (
        BytesMessage,
        DeflateOptions,
        Extension,
        FrameReader,
        FrameWriter,
        TextMessage,
        negotiate_deflate,
    )

    def run() -> float:
        deflate = None
        if case.name.startswith("deflate"):
            # window 15 and memLevel 8 on both sides: the same zlib work as wsproto's defaults
            offer = Extension("permessage-deflate", ())
            deflate = negotiate_deflate([offer], DeflateOptions(window_bits=15, mem_level=8))
        reader = FrameReader(deflate=deflate)
        writer = FrameWriter(deflate)
        steps = case.steps
        nsteps = len(steps)
        sent = 0
        loops = messages // case.per_step
        gc.collect()
        start = time.perf_counter_ns()
        for i in range(loops):
            reader.feed(steps[i % nsteps])
            while (ev := reader.next_event()) is not None:
                if ev.__class__ is TextMessage:
                    sent += len(writer.text(ev.data))  # type: ignore[union-attr]
                elif ev.__class__ is BytesMessage:
                    sent += len(writer.binary(ev.data))  # type: ignore[union-attr]
        elapsed = time.perf_counter_ns() - start
        assert sent, "nothing was echoed"
        return elapsed / (loops * case.per_step) / 1000.0

    return run


def wsproto_runner(case: Case, messages: int) -> Callable[[], float]:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage, TextMessage
    from wsproto.extensions import PerMessageDeflate

    def run() -> float:
        extensions = []
        if case.name.startswith("deflate"):
            ext = PerMessageDeflate()
            ext.finalize("permessage-deflate")  # what the server side ends up with
            extensions.append(ext)
        conn = Connection(ConnectionType.SERVER, extensions=extensions)
        steps = case.steps
        nsteps = len(steps)
        sent = 0
        loops = messages // case.per_step
        gc.collect()
        start = time.perf_counter_ns()
        for i in range(loops):
            conn.receive_data(steps[i % nsteps])
            for ev in conn.events():
                if ev.__class__ is TextMessage:
                    sent += len(conn.send(TextMessage(data=ev.data)))  # type: ignore[attr-defined]
                elif ev.__class__ is BytesMessage:
                    sent += len(conn.send(BytesMessage(data=ev.data)))  # type: ignore[attr-defined]
        elapsed = time.perf_counter_ns() - start
        assert sent, "nothing was echoed"
        return elapsed / (loops * case.per_step) / 1000.0

    return run


def check_same_answer(case: Case) -> None:
    """Both sides must read the case's bytes as the same messages (else the race is off)."""
    greenhorn_runner(case, case.per_step * len(case.steps))()
    wsproto_runner(case, case.per_step * len(case.steps))()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=15, help="samples per side and case")
    ap.add_argument("--messages", type=int, default=20000, help="messages per sample")
    ap.add_argument("--cases", default="", help="comma-separated subset of the cases")
    args = ap.parse_args(argv)
    try:
        import wsproto  # noqa: F401
    except ImportError:
        print("wsproto is not importable: pip install wsproto (the dev extra has it)")
        return 2
    import wsproto as _w

    cases = build_cases(args.messages)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.name in wanted]
    print(f"python {sys.version.split()[0]}, wsproto {_w.__version__}, {args.samples} samples")
    print(f"of {args.messages} messages per side and case, A B A B; best (median) us/message\n")
    rows = []
    for case in cases:
        check_same_answer(case)
        ours = greenhorn_runner(case, args.messages)
        theirs = wsproto_runner(case, args.messages)
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.samples):
            a.append(ours())
            b.append(theirs())
        rows.append((case.name, min(a), statistics.median(a), min(b), statistics.median(b)))
        print(
            f"  {case.name:<16} greenhorn {min(a):7.2f} ({statistics.median(a):7.2f})   "
            f"wsproto {min(b):7.2f} ({statistics.median(b):7.2f})",
            flush=True,
        )
    print("\n| case | greenhorn us/msg | wsproto us/msg | wsproto / greenhorn |")
    print("|---|---|---|---|")
    for name, a_best, _a_med, b_best, _b_med in rows:
        print(f"| {name} | {a_best:.2f} | {b_best:.2f} | {b_best / a_best:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
