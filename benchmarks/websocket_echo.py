"""WebSocket echo round trips: greenhorn -k asgi against gunicorn -k asgi and uvicorn, same
app, same client, same run, interleaved (issue 23's WebSocket figure).

Why a script of its own: wrk speaks no WebSocket. The client here is the ``websockets``
library (in this interpreter), ``--connections`` connections each sending a short text
message and waiting for its echo, again and again for ``--duration`` seconds, no
compression (every server would negotiate permessage-deflate otherwise, which measures
zlib). Each server runs one worker on ``asgiapp:ws_echo`` (``--asgi-loop`` for greenhorn and
gunicorn, ``--loop`` for uvicorn, whose WebSockets are the ``websockets`` library's: uvloop
everywhere by default).

Per run: round trips per second, the round-trip time (p50/p99, as the client measured it,
client included), and the server's CPU per round trip (utime+stime of its process tree
from /proc, divided by the round trips): that last one is the server's own cost, the
figure to compare. It installs nothing::

    python benchmarks/websocket_echo.py --gunicorn-python /tmp/gvenv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from detect import find_gunicorn_python, find_uvicorn_python, import_path  # noqa: E402
from procstat import cpu_seconds  # noqa: E402
from servers import Probe, Server, ServerFailed, ServerKind  # noqa: E402

APPS_DIR = os.path.join(HERE, "apps")
MESSAGE = "x" * 32


async def _connection(url: str, until: float, rtts: list[float]) -> None:
    import websockets

    async with websockets.connect(url, compression=None, max_queue=None) as ws:
        clock = time.perf_counter
        while clock() < until:
            t0 = clock()
            await ws.send(MESSAGE)
            await ws.recv()
            rtts.append(clock() - t0)


async def _load(url: str, connections: int, seconds: float) -> list[float]:
    rtts: list[float] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(*(_connection(url, until, rtts) for _ in range(connections)))
    return rtts


def run_once(kind: ServerKind, loop: str, args: argparse.Namespace) -> dict[str, Any]:
    if kind.cli == "uvicorn":
        flags = ["-w", "1", "--loop", loop]
        if loop == "uvloop":
            flags += ["--http", "httptools"]
    else:
        flags = ["-w", "1", "-k", "asgi", "--asgi-loop", loop]
    server = Server(kind, "asgiapp:ws_echo", APPS_DIR, flags)
    record: dict[str, Any] = {"server": kind.name}
    try:
        server.start(Probe(expect_length=14))
        url = f"ws://127.0.0.1:{server.port}/"
        asyncio.run(_load(url, args.connections, args.warmup))
        before, _ = cpu_seconds(server.pid)
        rtts = asyncio.run(_load(url, args.connections, args.duration))
        after, _ = cpu_seconds(server.pid)
        rtts.sort()
        n = len(rtts)
        record.update(
            available=True,
            round_trips=n,
            per_second=n / args.duration,
            rtt_p50_us=rtts[n // 2] * 1e6,
            rtt_p99_us=rtts[min(n - 1, int(n * 0.99))] * 1e6,
            cpu_us_per_round_trip=(after - before) / n * 1e6,
        )
    except (ServerFailed, OSError, RuntimeError) as exc:
        record.update(available=False, reason=str(exc)[:300])
    finally:
        server.stop()
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    ap.add_argument("--gunicorn-python")
    ap.add_argument("--uvicorn-python")
    args = ap.parse_args(argv)
    import greenhorn

    kinds = [
        ServerKind(
            "greenhorn",
            sys.executable,
            ("-m", "greenhorn"),
            greenhorn.__version__,
            import_path(sys.executable),
        )
    ]
    gunicorn = find_gunicorn_python(args.gunicorn_python)
    if gunicorn is not None:
        kinds.append(
            ServerKind(
                "gunicorn", gunicorn[0], ("-m", "gunicorn"), gunicorn[1], import_path(gunicorn[0])
            )
        )
    uvicorn = find_uvicorn_python(args.uvicorn_python, gunicorn[0] if gunicorn else None)
    if uvicorn is not None:
        kinds.append(
            ServerKind(
                "uvicorn",
                uvicorn[0],
                ("-m", "uvicorn"),
                uvicorn[1],
                import_path(uvicorn[0]),
                "uvicorn",
            )
        )
    runs: dict[str, list[dict[str, Any]]] = {k.name: [] for k in kinds}
    for rnd in range(args.rounds):
        for kind in kinds:
            record = run_once(kind, args.loop, args)
            runs[kind.name].append(record)
            if record["available"]:
                print(
                    f"[round {rnd}] {kind.name:<10} {record['per_second']:8.0f} round trips/s  "
                    f"rtt p50 {record['rtt_p50_us']:7.0f} us  p99 {record['rtt_p99_us']:7.0f} us  "
                    f"server cpu {record['cpu_us_per_round_trip']:5.1f} us/round trip",
                    flush=True,
                )
            else:
                print(
                    f"[round {rnd}] {kind.name:<10} not available: {record['reason']}", flush=True
                )
    print()
    print(
        f"WebSocket echo, {args.connections} connections, 32-byte text, no compression, "
        f"{args.loop}, 1 worker, median of {args.rounds} interleaved rounds of {args.duration:g} s"
    )
    print()
    print("| server | round trips/s | RTT p50 us | RTT p99 us | server CPU us/round trip |")
    print("|---|---|---|---|---|")
    medians: dict[str, float] = {}
    for kind in kinds:
        ok = [r for r in runs[kind.name] if r.get("available")]
        if not ok:
            print(f"| {kind.name} | not available | | | |")
            continue

        def med(key: str, ok: list[dict[str, Any]] = ok) -> float:
            return statistics.median(r[key] for r in ok)

        medians[kind.name] = med("cpu_us_per_round_trip")
        print(
            f"| {kind.name} {kind.version} | {med('per_second'):.0f} | {med('rtt_p50_us'):.0f} "
            f"| {med('rtt_p99_us'):.0f} | {med('cpu_us_per_round_trip'):.1f} |"
        )
    for other in ("gunicorn", "uvicorn"):
        if "greenhorn" in medians and other in medians:
            ratio = medians["greenhorn"] / medians[other]
            print(f"| **greenhorn/{other}** | | | | **{ratio:.2f}x** ({1 / ratio:.1f}x cheaper) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
