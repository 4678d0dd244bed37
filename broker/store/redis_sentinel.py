"""Sentinel clients that stay on the current master: no connection to a former master is ever used again.

redis-py asks the Sentinels who the master is only when it opens a connection, and then drops the idle
connections to the old master. Connections busy at that moment go back to the pool still talking to the old
master, and a connection held for good (the local cache's invalidation listener) is never checked at all. After
a failover the old master keeps its data frozen and hears of no write made on the new one, so such connections
would serve stale reads (a session ended since would look alive) and report no invalidation, for the seconds
until the Sentinels turn the old master into a replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, ClassVar

from redis import exceptions as redis_exceptions
from redis.asyncio.sentinel import SentinelConnectionPool

log = logging.getLogger("broker.store.redis")

# How often follow_failovers asks the Sentinels who the master is, beside the requests.
MASTER_CHECK_INTERVAL = 1.0


class CurrentMasterPool(SentinelConnectionPool):
    """A Sentinel master pool that drops every connection, busy ones included, once the master changes, and
    tells the other pools of the same service in this event loop (the invalidation listener has one of its own).
    """

    _every: ClassVar[weakref.WeakSet[CurrentMasterPool]] = weakref.WeakSet()

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sentinels = tuple(sorted((str(s.connection_pool.connection_kwargs.get("host")),
                                        int(s.connection_pool.connection_kwargs.get("port", 0)))
                                       for s in sentinel_manager.sentinels))
        CurrentMasterPool._every.add(self)

    async def get_master_address(self) -> Any:
        # Connections live on one event loop; several loops (several apps in one process) never share them.
        self._loop = asyncio.get_running_loop()
        address = await self.sentinel_manager.discover_master(self.service_name)
        if self.master_address is None:
            self.master_address = address
        for pool in list(self._every):
            if (pool._loop is self._loop and pool.service_name == self.service_name
                    and pool._sentinels == self._sentinels and pool.master_address not in (None, address)):
                pool.master_address = address
                await pool.disconnect(inuse_connections=True)  # a busy command fails and is retried once
        return address

    async def ensure_connection(self, connection: Any) -> None:
        """Never hand out a connection to an address other than the master's (it reconnects instead)."""
        if self.master_address is not None and connection.is_connected and (
                connection.host, connection.port) != tuple(self.master_address):
            await connection.disconnect()
        await super().ensure_connection(connection)


async def follow_failovers(client: Any, interval: float = MASTER_CHECK_INTERVAL) -> None:
    """Ask the Sentinels who the master is every `interval` seconds, so that a quiet process (or one whose only
    traffic is reads) moves to a new master within that time; for a client of another kind, return at once."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, CurrentMasterPool):
        return
    while True:
        # When no Sentinel answers, requests get their 503s meanwhile.
        with contextlib.suppress(redis_exceptions.ConnectionError, redis_exceptions.TimeoutError, OSError):
            before = pool.master_address
            if await pool.get_master_address() != before and before is not None:
                log.warning("redis: the Sentinels name a new master for %s", pool.service_name)
        await asyncio.sleep(interval)
