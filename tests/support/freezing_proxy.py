"""A loopback TCP proxy in front of Redis that can freeze the invalidation connections that pass through it.

Frozen is neither closed nor failing: the proxy keeps the connection open and forwards nothing more either way,
as a frozen process or a dead network path would. Only connections on which the client turned on CLIENT
TRACKING freeze; the broker's other connections go on working. Runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

MARKER = b"TRACKING"


class _Link:
    __slots__ = ("tracking",)

    def __init__(self) -> None:
        self.tracking = False


class FreezingProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="freezing-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._thawed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url_for(self, upstream_url: str) -> str:
        """The upstream's URL (its credentials kept), pointing at this proxy instead."""
        return upstream_url.replace(f"127.0.0.1:{self.upstream[1]}", f"127.0.0.1:{self.port}")

    def start(self) -> FreezingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _listen(self) -> asyncio.Server:
        self._thawed = asyncio.Event()
        self._thawed.set()
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def freeze(self) -> None:
        """From now on, tracking connections forward nothing (their next bytes wait, either way)."""
        self._loop.call_soon_threadsafe(self._gate().clear)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._gate().set)

    def _gate(self) -> asyncio.Event:
        assert self._thawed is not None
        return self._thawed

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            link = _Link()
            await asyncio.gather(self._pump(reader, up_writer, link, from_client=True),
                                 self._pump(up_reader, writer, link, from_client=False))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link, *,
                    from_client: bool) -> None:
        try:
            while data := await source.read(65536):
                if from_client and MARKER in data:
                    link.tracking = True
                if link.tracking:
                    await self._gate().wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()

    async def _shutdown(self) -> None:
        self._gate().set()
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
