"""Serving an embedded HTTP server (the local Pinecone data plane, the PostgREST stand-in) in a thread that sleeps
until a connection comes, and stopping it at once.

Why: ``serve_forever(poll_interval)`` wakes every ``poll_interval`` only to see whether it was asked to stop, and
``shutdown()`` waits for that wake-up; a short interval keeps ``stop()`` fast but wakes every server of the sandbox
20 times a second while it waits (bench/README.md: Idle processes). Here the loop blocks until a connection, and
``stop_serving`` connects to wake it once it was asked to stop.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading

#: How long ``stop_serving`` waits for the loop to end before it connects again (the first connection may come
#: before the loop was told to stop, and be served like any other).
_WAKE_AGAIN_S = 0.05


def serve_in_thread(server: socketserver.BaseServer, name: str) -> threading.Thread:
    """Serve ``server`` in a daemon thread named ``name``, with no poll interval."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": None}, name=name, daemon=True)
    thread.start()
    return thread


def stop_serving(server: socketserver.TCPServer) -> None:
    """Stop ``server``'s ``serve_forever`` (started by ``serve_in_thread``) and wait until it returned."""
    stopping = threading.Thread(target=server.shutdown, name="stop-serving", daemon=True)
    stopping.start()
    host, port = server.server_address[:2]
    while stopping.is_alive():
        with contextlib.suppress(OSError):  # a connection refused or reset: the loop has ended or is ending
            socket.create_connection((str(host), int(port)), timeout=1).close()
        stopping.join(_WAKE_AGAIN_S)
