"""TikTok token freshness: refresh before use, one refresh per user across replicas, dead grants ended cleanly.

TikTok rotates refresh tokens: each refresh kills the token it presented. So for one user at most one refresh
runs at a time across all replicas (a Redis lease its holder keeps renewing, so that a holder that dies frees it
within one lease period), the result is stored only over the version it was made from (compare-and-set), and
everyone else waits for and reads the winner's result. A refresh sent to TikTok is seen through even when its
caller stops waiting: TikTok has rotated the refresh token by the time it answers, so its answer must be stored.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math

from broker.clock import Clock
from broker.domain import ProviderTokens
from broker.errors import StoreUnavailable, UpstreamRejected, UpstreamUnavailable
from broker.metrics import Metrics
from broker.providers.base import Provider
from broker.store.tiktok_tokens import TikTokTokenStore, VersionedTokens
from broker.tasks import stop_tasks

log = logging.getLogger("broker.upstream")

SIGN_IN_AGAIN = "Your TikTok sign-in is no longer valid. Please sign in again."
POLL_INTERVAL = 0.05  # how often a waiter looks for the winner's result; a refresh takes ~100 ms or more
REFRESH_AHEAD_BATCH = 500  # users per background round; the rest are due again next round
# A lease lives this long unless its holder renews it (every third of it) while its refresh runs. Short, so that
# waiters take over from a replica that died mid-refresh within one request; long enough that a live holder's
# renewal is never late (a lapse lets a second replica present the same refresh token).
LEASE_TTL = 3.0


def _raise_if_cancelled() -> None:
    """redis-py's asyncio client sometimes swallows a task's CancelledError (seen with redis 8.1: a loop of
    commands survived ~40% of cancels). The request still shows in Task.cancelling(), so loops check it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class UpstreamTokens:
    """Hands out TikTok tokens valid for at least `margin` seconds, refreshing them when needed.

    `call_timeout` bounds how long a caller waits for a refresh it started (None: until it ends); the refresh
    itself goes on in the background for as long as the provider waits for TikTok. `lease_ttl` is how long a
    lease outlives its holder. `wait_timeout` bounds how long a caller waits for another replica's refresh
    (default: long enough to outlast the lease of a replica that died, then refresh itself).
    """

    def __init__(self, store: TikTokTokenStore, provider: Provider, clock: Clock, *, margin: int,
                 call_timeout: float | None = None, lease_ttl: float = LEASE_TTL,
                 wait_timeout: float | None = None, metrics: Metrics | None = None) -> None:
        self.store = store
        self.provider = provider
        self.clock = clock
        self.margin = margin
        self.call_timeout = call_timeout
        self.lease_ttl = lease_ttl
        self.lease_ttl_ms = max(1, math.ceil(lease_ttl * 1000))
        self.wait_timeout = wait_timeout if wait_timeout is not None else lease_ttl + (call_timeout or 0) + 1
        self.metrics = metrics or Metrics()
        self._running: set[asyncio.Task[VersionedTokens]] = set()  # refreshes in flight, strongly held

    async def fresh(self, user_id: str, *, reject_access_token: str | None = None) -> ProviderTokens:
        """Tokens valid for at least `margin` seconds. `reject_access_token`: TikTok refused this access token,
        so refresh if it is still the stored one (not if another caller has replaced it already).

        Raises UpstreamRejected when the user has no live grant (sign in again; TikTok is not called),
        UpstreamUnavailable when TikTok fails or another replica's refresh does not finish in time.
        """
        return (await self._ensure(user_id, self.margin, reject_access_token)).tokens

    async def refresh_ahead_once(self, horizon: int) -> int:
        """Refresh every linked user whose access token expires within `horizon` seconds; how many were."""
        due = await self.store.due(self.clock.now() + horizon, REFRESH_AHEAD_BATCH)
        refreshed = 0
        for user_id in due:
            _raise_if_cancelled()
            try:
                before = await self.store.get(user_id)
                if before is None:  # link ended or grant expired: nothing left to keep fresh
                    await self.store.untrack(user_id)
                    continue
                after = await self._ensure(user_id, max(horizon, self.margin), None)
                if after.version != before.version:
                    refreshed += 1
                else:  # the index entry was early (it may lag the grant): move it to the real expiry
                    await self.store.track(user_id, after.tokens.expires_at)
            except Exception as exc:  # one user's failure must not stop the others
                self._count_store_error(exc)
                log.warning("refresh-ahead failed for user %s: %s %s", user_id, type(exc).__name__,
                            getattr(exc, "log_detail", ""))
        return refreshed

    async def drain(self, grace: float) -> None:
        """At shutdown: let refreshes in flight store TikTok's answer (it is the only copy), for up to `grace` s."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=grace)
        for task in list(self._running):
            task.cancel()
        if self._running:  # let the cancelled ones release their leases
            await asyncio.wait(list(self._running), timeout=1)

    async def run_refresh_ahead(self, *, interval: float, horizon: int) -> None:
        """Background loop for the composition root's lifespan; ends only when cancelled."""
        while True:
            try:
                count = await self.refresh_ahead_once(horizon)
                if count:
                    log.info("refresh-ahead renewed %d TikTok grant(s)", count)
            except Exception as exc:  # e.g. Redis down: try again next round
                self._count_store_error(exc)
                log.warning("refresh-ahead round failed: %s %s", type(exc).__name__, getattr(exc, "log_detail", ""))
            _raise_if_cancelled()
            await asyncio.sleep(interval)

    def _count_store_error(self, error: Exception) -> None:
        if isinstance(error, StoreUnavailable):
            self.metrics.redis_unavailable("tiktok_refresh_ahead")

    # -- single flight --

    def _stale(self, tokens: ProviderTokens, margin: float, reject: str | None) -> bool:
        if reject is not None and hmac.compare_digest(tokens.access_token.encode(), reject.encode()):
            return True
        return tokens.expires_at - self.clock.now() <= margin

    async def _stored(self, user_id: str) -> VersionedTokens:
        current = await self.store.get(user_id)
        if current is None:
            raise UpstreamRejected(SIGN_IN_AGAIN, log_detail=f"no TikTok grant stored for user {user_id}")
        return current

    async def _ensure(self, user_id: str, margin: float, reject: str | None) -> VersionedTokens:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while True:
            current = await self._stored(user_id)
            if not self._stale(current.tokens, margin, reject):
                return current
            fence = await self.store.acquire_lease(user_id, self.lease_ttl_ms)
            if fence is not None:
                # Holding the lease means one TikTok attempt at most, awaited for call_timeout: bounded.
                return await self._refresh_holding(user_id, fence, margin, reject)
            if not await self._await_winner(user_id, current.version, deadline):
                raise UpstreamUnavailable(log_detail=f"tiktok refresh for user {user_id}: waited "
                                                     f"{self.wait_timeout}s for another replica")

    async def _await_winner(self, user_id: str, seen_version: int, deadline: float) -> bool:
        """Poll until the winner wrote (or the grant changed), or its lease vanished without a result (it
        failed or died: the caller may try itself). False when the deadline passes first."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))
            latest = await self.store.get(user_id)
            _raise_if_cancelled()
            if latest is None or latest.version != seen_version:
                return True
            if not await self.store.lease_held(user_id):
                return True
        return False

    async def _refresh_holding(self, user_id: str, fence: str, margin: float,
                               reject: str | None) -> VersionedTokens:
        """Run the refresh in its own task, so that a caller that stops waiting (our timeout, a client that
        hung up) does not abandon TikTok's answer: that answer holds the only live refresh token."""
        task = asyncio.create_task(self._refresh_leased(user_id, fence, margin, reject))
        self._running.add(task)
        task.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.call_timeout)
        except TimeoutError:
            raise UpstreamUnavailable("TikTok did not answer in time. Please try again shortly.",
                                      log_detail=f"tiktok refresh for user {user_id}: no answer after "
                                                 f"{self.call_timeout}s; it goes on in the background") from None

    def _finished(self, task: asyncio.Task[VersionedTokens]) -> None:
        self._running.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here: a caller that stopped waiting never looks (failures are logged)

    async def _keep_lease(self, user_id: str, fence: str) -> None:
        """Renew the lease while the refresh runs; stop once it is not ours any more (released by the
        compare-and-set that stored the result, or lapsed: then the refresh's own outcome tells)."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            _raise_if_cancelled()
            try:
                if not await self.store.renew_lease(user_id, fence, self.lease_ttl_ms):
                    return
            except StoreUnavailable:
                continue  # the store is away: nobody else can take the lease from it either

    async def _refresh_leased(self, user_id: str, fence: str, margin: float, reject: str | None) -> VersionedTokens:
        keeper = asyncio.create_task(self._keep_lease(user_id, fence))
        try:
            # Re-read under the lease: the previous holder may have finished between our read and our SET NX.
            current = await self._stored(user_id)
            if not self._stale(current.tokens, margin, reject):
                return current
            if current.tokens.refresh_expires_at <= self.clock.now():
                await self._end_link(user_id, current, "refresh_token_expired")
                raise UpstreamRejected(SIGN_IN_AGAIN, log_detail=f"TikTok refresh token expired for user {user_id}")
            try:
                issued = await self.provider.refresh(current.tokens.refresh_token)
            except UpstreamRejected:
                return await self._after_rejection(user_id, current)
            if await self.store.compare_and_set(user_id, current.version, issued, fence):
                log.info("TikTok grant refreshed for user %s (version %d)", user_id, current.version + 1)
                return VersionedTokens(current.version + 1, issued)
            # Someone wrote meanwhile: a new login (its grant supersedes ours) or an ended link.
            log.warning("TikTok refresh for user %s discarded: the grant changed during the call", user_id)
            return await self._stored(user_id)
        finally:
            await stop_tasks([keeper])
            await self._release_quietly(user_id, fence)

    async def _after_rejection(self, user_id: str, presented: VersionedTokens) -> VersionedTokens:
        """TikTok said invalid_grant. If another writer replaced the refresh token we presented (a replica
        whose lease lapsed, a new login), theirs is the answer; otherwise the grant is dead: end the link once,
        so later calls fail fast without calling TikTok. The version check is inside the atomic break, so
        there is no gap between "re-read" and "break" for a winner's write to fall into."""
        if not await self._end_link(user_id, presented, "invalid_grant"):
            return await self._stored(user_id)
        raise UpstreamRejected(SIGN_IN_AGAIN, log_detail=f"TikTok refused the refresh for user {user_id}")

    async def _end_link(self, user_id: str, current: VersionedTokens, reason: str) -> bool:
        ended = await self.store.mark_link_broken(user_id, reason, self.clock.now(),
                                                  expected_version=current.version)
        if ended:
            log.warning("TikTok link ended for user %s: %s", user_id, reason)
        return ended

    async def _release_quietly(self, user_id: str, fence: str) -> None:
        # The lease expires by itself; failing to release it must not hide the refresh's own outcome.
        try:
            await self.store.release_lease(user_id, fence)
        except Exception as exc:
            log.warning("could not release the TikTok refresh lease of user %s: %s", user_id, type(exc).__name__)
