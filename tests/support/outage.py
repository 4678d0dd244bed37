"""Waiting for a broker to notice that Redis is gone.

A process serves the sessions it holds in memory until its invalidation connection reports the loss (usually
at once on loopback, at worst BROKER_LOCAL_CACHE_TRUST_MS later): nothing can be revoked while Redis is down, so those
answers are still true. Tests of an outage wait for the first refusal, and check that nothing else was seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def first_unavailable(fetch: Callable[[], httpx.Response], within: float = 5.0) -> tuple[httpx.Response, int]:
    """The first 503 `fetch` returns, and how many 200s (answers from memory) came before it."""
    served = 0
    deadline = time.monotonic() + within
    while True:
        response = fetch()
        if response.status_code == 503:
            return response, served
        assert response.status_code == 200, (response.status_code, response.text)
        assert time.monotonic() < deadline, "the broker kept answering from memory with Redis gone"
        served += 1
        time.sleep(0.01)
