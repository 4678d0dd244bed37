"""Concurrent clients in a background thread: each action runs in its own loop until stopped, every answer kept.

The test thread stays free to break things (kill Redis, kill a replica) while the load runs, and afterwards
judges each answer by when it was asked and answered (monotonic instants).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

REQUEST_TIMEOUT = 20.0  # far above any bound the broker promises: a hang shows as status 0, not a stuck test


@dataclass(frozen=True)
class Answer:
    kind: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (transport error or client timeout)
    headers: httpx.Headers
    body: str

    def set_cookies(self) -> list[str]:
        return self.headers.get_list("set-cookie")


Action = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Worker:
    kind: str
    action: Action
    after: Callable[[httpx.Response], None] | None = None  # e.g. keep the newest refresh token


class Load:
    def __init__(self, workers: Iterable[Worker], *, pause: float = 0.005) -> None:
        self.workers = list(workers)
        self.pause = pause
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT + 10)
        assert not self._thread.is_alive(), "load did not stop"
        return list(self.answers)

    def seen(self, kind: str, status: int, *, since: float = 0.0) -> int:
        return sum(1 for a in list(self.answers) if a.kind == kind and a.status == status and a.started >= since)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    async def _main(self) -> None:
        await asyncio.gather(*(self._loop(worker) for worker in self.workers))

    async def _loop(self, worker: Worker) -> None:
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, follow_redirects=False) as client:
            while not self._stop.is_set():
                await self._once(client, worker)
                await asyncio.sleep(self.pause)

    async def _once(self, client: httpx.AsyncClient, worker: Worker) -> None:
        started = time.monotonic()
        try:
            response = await worker.action(client)
        except httpx.HTTPError:
            self.answers.append(Answer(worker.kind, started, time.monotonic(), 0, httpx.Headers(), ""))
            return
        finally:
            client.cookies.clear()  # every request carries exactly the credential its action chose
        self.answers.append(Answer(worker.kind, started, time.monotonic(), response.status_code, response.headers,
                                   response.text))
        if worker.after is not None:
            worker.after(response)
