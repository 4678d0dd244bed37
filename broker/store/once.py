"""At-most-once markers: the first caller for a name wins, everyone else learns it was already handled."""

from __future__ import annotations

from broker.store.keys import KeySpace, digest
from broker.store.redis import RedisClient, translated_errors


class OnceMarkers:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    async def first(self, scope: str, name: str, ttl: int) -> bool:
        """True for the first call with this (scope, name) within ttl seconds. Names are stored hashed."""
        async with translated_errors():
            return bool(await self.client.set(f"{self.keys.prefix}once:{scope}:{digest(name)}", "1", nx=True, ex=ttl))

    async def forget(self, scope: str, name: str) -> None:
        """Undo a marker whose work failed, so a retry of the same delivery is processed."""
        async with translated_errors():
            await self.client.delete(f"{self.keys.prefix}once:{scope}:{digest(name)}")
