"""The pure-Python floor: the least a pre-fork Python server can do for a hello request.

Why: server CPU per request mixes kernel work (accept, TCP set-up and teardown, close) with
the server's own Python. This 60-line server does only accept, one recv, one send of a
fixed response (its FIN in the same segment, as greenhorn sends it) and close, in N
forked workers, so its CPU per request is the floor any pure-Python pre-fork server pays
on this machine; greenhorn's figure minus this one is what greenhorn's own code costs. It answers every request with the same hello response (no HTTP
parsing, no WSGI), so ``run.py`` uses it only for ``hello_close`` (``--servers ...,floor``).

It takes the benchmark's command line (``-b``, ``-w``; other flags and the app are ignored).
"""

from __future__ import annotations

import os
import signal
import socket
import sys

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    b"Server: floor\r\nConnection: close\r\n\r\nHello, world!\n"
)


MORE = getattr(socket, "MSG_MORE", 0)


def serve(listener: socket.socket) -> None:
    accept = listener.accept
    while True:
        client, _ = accept()
        try:
            client.recv(65536)
            client.send(RESPONSE, MORE)  # held until the shutdown adds the FIN: one segment
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        client.close()


def main(argv: list[str]) -> int:
    bind, workers = "127.0.0.1:8000", 1
    for i, arg in enumerate(argv[:-1]):
        if arg == "-b":
            bind = argv[i + 1]
        elif arg == "-w":
            workers = int(argv[i + 1])
    host, _, port = bind.rpartition(":")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(2048)
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(listener)
            os._exit(0)
        pids.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        for pid in pids:
            os.waitpid(pid, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
