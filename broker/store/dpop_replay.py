"""The jti replay cache of DPoP proofs (RFC 9449 section 11.1), shared by every replica through Redis."""

from __future__ import annotations

import math

from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors


class DPoPReplayCache:
    """`broker_sdk.dpop.ReplayCache` in Redis: one key per proof seen, expiring when the proof would be refused as
    too old anyway, so the cache never grows beyond the proofs of the last minute or so."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    async def first_use(self, key: str, until: float) -> bool:
        async with translated_errors():
            return bool(await self.client.set(self.keys.dpop_proof(key), "1", nx=True, pxat=math.ceil(until * 1000)))
