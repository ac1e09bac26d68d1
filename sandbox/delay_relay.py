"""A TCP relay that delays every byte by a fixed time each way: the network latency of ``tc netem delay``, in user
space, for kernels built without the netem qdisc (the VMs this project runs on have none).

Each accepted connection is paired with one to the upstream address; what either side sends is forwarded in order,
``delay_s`` after it arrived, as a link with that one-way latency would carry it (bandwidth is not limited). A side
that closes or fails closes the pair. It runs in its own thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field

_CHUNK = 256 * 1024


@dataclass
class DelayRelay:
    """Listens on ``listen`` (host, port) and relays to ``upstream`` (host, port), ``delay_s`` each way."""

    listen: tuple[str, int]
    upstream: tuple[str, int]
    delay_s: float
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _server: asyncio.Server | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> DelayRelay:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._pair, *self.listen, backlog=1024))
            except BaseException as e:  # reported to the caller of start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"delay-relay-{self.listen[1]}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _pair(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                self._carry(client_reader, upstream_writer, client_writer),
                self._carry(upstream_reader, client_writer, upstream_writer),
            )
        except asyncio.CancelledError:
            pass  # the relay stops: asyncio would report a cancelled connection handler as an error
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _carry(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reader_side: asyncio.StreamWriter
    ) -> None:
        """Forward ``reader`` to ``writer``, each chunk ``delay_s`` after it was read; at its end, half-close. A
        failed side (reset, refused write) closes both, so the other direction ends too."""
        in_flight: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        done = False

        async def receive() -> None:
            nonlocal done
            try:
                while chunk := await reader.read(_CHUNK):
                    in_flight.append((time.monotonic() + self.delay_s, chunk))
                    arrived.set()
            except OSError:
                writer.close()
            finally:
                done = True
                arrived.set()

        receiving = asyncio.ensure_future(receive())
        try:
            while True:
                if not in_flight:
                    if done:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, chunk = in_flight[0]
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                in_flight.popleft()
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            writer.close()
            reader_side.close()
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await receiving
