"""A loopback TCP proxy in front of Redis that counts round trips: how often a client speaks after an answer.

A pipeline or MULTI/EXEC block is one write followed by one read, so it counts once; a script call counts
once however many commands it runs inside Redis. Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class _Connection:
    __slots__ = ("awaiting_answer",)

    def __init__(self) -> None:
        self.awaiting_answer = False


class CountingProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.round_trips = 0
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="redis-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> CountingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            state = _Connection()
            await asyncio.gather(self._pump(reader, up_writer, state, from_client=True),
                                 self._pump(up_reader, writer, state, from_client=False))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, state: _Connection, *,
                    from_client: bool) -> None:
        try:
            while data := await source.read(65536):
                if from_client:
                    if not state.awaiting_answer:
                        self.round_trips += 1  # counted before forwarding, so it is in before the answer
                        state.awaiting_answer = True
                else:
                    state.awaiting_answer = False
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()
