"""Revoking a TikTok grant at TikTok, now if TikTok answers, later (from a durable queue) if it does not."""

from __future__ import annotations

import asyncio
import logging

from broker.clock import Clock
from broker.domain import ProviderTokens
from broker.errors import BrokerError, StoreUnavailable, UpstreamError, UpstreamRejected
from broker.metrics import Metrics
from broker.providers.base import Provider
from broker.store.revocations import RevocationQueue

log = logging.getLogger("broker.revocations")

FIRST_RETRY = 30.0
MAX_RETRY = 3600.0
CLAIM_LEASE = 120.0


def backoff(attempts: int) -> float:
    return float(min(MAX_RETRY, FIRST_RETRY * 2 ** attempts))


class TikTokRevoker:
    def __init__(self, queue: RevocationQueue, provider: Provider, clock: Clock, metrics: Metrics) -> None:
        self.queue = queue
        self.provider = provider
        self.clock = clock
        self.metrics = metrics

    async def revoke(self, tokens: ProviderTokens) -> str:
        """"revoked" (or already dead at TikTok), or "queued" for a later retry. Never raises for TikTok's sake."""
        done, _ = await self._attempt(tokens)
        if done:
            self.metrics.tiktok_revokes.labels("revoked").inc()
            return "revoked"
        self.metrics.tiktok_revoke_failures.inc()
        now = self.clock.now()
        await self.queue.enqueue(tokens, next_at=now + backoff(0), now=now)
        return "queued"

    async def backlog(self) -> int:
        """Revocations waiting in the durable queue (all replicas together)."""
        return await self.queue.backlog()

    async def _attempt(self, tokens: ProviderTokens) -> tuple[bool, ProviderTokens]:
        """(done, the grant as it now stands). TikTok saying the grant is already dead counts as done."""
        now = self.clock.now()
        if tokens.refresh_expires_at <= now:
            return True, tokens  # nothing can use this grant any more
        try:
            if tokens.expires_at <= now + 5:
                # TikTok revokes by access token; an expired one is first traded for a live one.
                tokens = await self.provider.refresh(tokens.refresh_token)
            await self.provider.revoke(tokens.access_token)
            return True, tokens
        except UpstreamRejected:
            return True, tokens
        except UpstreamError as exc:
            log.warning("TikTok revoke failed, will retry: %s", exc.log_detail or exc.code)
            return False, tokens

    async def retry_due(self) -> int:
        """One pass over due revocations; returns how many completed."""
        completed = 0
        for item in await self.queue.claim_due(self.clock.now(), lease=CLAIM_LEASE):
            done, tokens = await self._attempt(item.tokens)
            if done:
                await self.queue.done(item.item_id)
                self.metrics.tiktok_revokes.labels("revoked_on_retry").inc()
                completed += 1
            else:
                await self.queue.retry(item, next_at=self.clock.now() + backoff(item.attempts + 1), tokens=tokens)
        return completed

    async def run(self, *, interval: float = 10.0) -> None:
        while True:
            try:
                await self.retry_due()
            except BrokerError as exc:  # Redis away for a moment: try again next round
                if isinstance(exc, StoreUnavailable):
                    self.metrics.redis_unavailable("tiktok_revoke_retries")
                log.warning("revocation retries skipped: %s", exc.log_detail or exc.code)
            except Exception:
                log.exception("revocation retries failed")
            await asyncio.sleep(interval)
