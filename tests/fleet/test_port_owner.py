"""Waiting for a server's port counts only the server's own listener (``nsmigrate_sandbox.services.wait_for_port``):
a port ``free_port`` gave can be taken by another process before the server binds it, and a connection to it then
succeeds while the server has failed ("Address already in use")."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from nsmigrate_sandbox.services import ServiceError, free_port, wait_for_port

LISTENER = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); "
    "print('up', flush=True); time.sleep(30)"
)


def test_another_process_listening_on_the_port_is_not_the_server() -> None:
    port = free_port()
    with socket.socket() as taken:  # someone else took the port first
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # it never listens there
        try:
            with pytest.raises(ServiceError, match=f"nothing listened on 127.0.0.1:{port}"):
                wait_for_port(port, 0.5, server)
            wait_for_port(port, 0.5)  # without a process, any listener does
        finally:
            server.kill()
            server.wait()


def test_the_servers_own_listener_ends_the_wait() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline() == b"up\n"
        wait_for_port(port, 5, server)
    finally:
        server.kill()
        server.wait()
