"""The durable queue of TikTok revocations that failed: sealed grants waiting to be revoked again.

Items name no user (no user id, no open_id): a revocation left over from a deleted account must not keep a
trace of who it was. Each item is the sealed grant under its own key (TTL: until the grant could no longer be
used anyway) plus a member of a sorted set scored by the next attempt time. Both share the `{revoke}` hash tag,
so the MULTIs below that write an item and its place in the queue stay in one Redis Cluster slot.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any, cast

from broker.domain import ProviderTokens
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors
from broker.store.tiktok_tokens import tokens_from_json, tokens_to_json
from broker.store.vault import Vault

# Take up to ARGV[3] due items and push them ARGV[2] seconds ahead, so another replica does not take them while
# this one works; a replica that dies mid-way leaves them to come back when that lease ends.
CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return due
"""


@dataclass(frozen=True)
class PendingRevocation:
    item_id: str
    tokens: ProviderTokens
    attempts: int


def _ms(instant: float) -> int:
    return math.ceil(instant * 1000)


class RevocationQueue:
    def __init__(self, client: RedisClient, keys: KeySpace, vault: Vault) -> None:
        self.client = client
        self.keys = keys
        self.vault = vault
        self._claim = client.register_script(CLAIM)

    @property
    def queue_key(self) -> str:
        return self.keys.revoke_queue()

    def item_key(self, item_id: str) -> str:
        return self.keys.revoke_item(item_id)

    async def enqueue(self, tokens: ProviderTokens, *, next_at: float, now: float) -> str:
        item_id = secrets.token_urlsafe(16)
        key = self.item_key(item_id)
        payload = json.dumps({"tokens": json.loads(_grant_json(tokens)), "attempts": 0}).encode()
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, self.vault.seal(payload, bound_to=key), pxat=_ms(max(tokens.refresh_expires_at, now + 60)))
            pipe.zadd(self.queue_key, {item_id: next_at})
            await pipe.execute()
        return item_id

    async def claim_due(self, now: float, *, lease: float, limit: int = 50) -> list[PendingRevocation]:
        async with translated_errors():
            ids = await self._claim(keys=[self.queue_key], args=[repr(now), lease, limit])
            found: list[PendingRevocation] = []
            for raw_id in ids:
                item_id = str(raw_id)
                blob = await self.client.get(self.item_key(item_id))
                if blob is None:  # expired: the grant cannot be used any more, nothing left to revoke
                    await cast(Any, self.client).zrem(self.queue_key, item_id)
                    continue
                data = json.loads(self.vault.open(str(blob), bound_to=self.item_key(item_id)))
                found.append(PendingRevocation(item_id, tokens_from_json(json.dumps(data["tokens"]).encode()),
                                               int(data["attempts"])))
        return found

    async def done(self, item_id: str) -> None:
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.item_key(item_id))
            pipe.zrem(self.queue_key, item_id)
            await pipe.execute()

    async def retry(self, item: PendingRevocation, *, next_at: float, tokens: ProviderTokens | None = None) -> None:
        """Schedule another attempt; `tokens` replaces the stored grant when a refresh rotated it meanwhile."""
        key = self.item_key(item.item_id)
        grant = tokens or item.tokens
        payload = json.dumps({"tokens": json.loads(_grant_json(grant)), "attempts": item.attempts + 1}).encode()
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, self.vault.seal(payload, bound_to=key), keepttl=True)
            pipe.zadd(self.queue_key, {item.item_id: next_at})
            await pipe.execute()

    async def backlog(self) -> int:
        async with translated_errors():
            return int(await cast(Any, self.client).zcard(self.queue_key))


def _grant_json(tokens: ProviderTokens) -> str:
    return tokens_to_json(tokens).decode()
