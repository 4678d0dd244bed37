"""Stopping asyncio tasks for good: background loops at shutdown, helper tasks when their work is done."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait until each is done, cancelling again while any is not, because Python 3.11's
    asyncio.wait_for (used inside redis-py) can swallow a cancellation that lands as a reply arrives. Their
    outcomes are retrieved (and dropped), so none is reported as never retrieved."""
    tasks = list(tasks)
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
