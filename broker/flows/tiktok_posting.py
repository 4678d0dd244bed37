"""Posting through the proxy: the scope each Content Posting call needs, whose publish_ids a caller may ask about,
and the record of each publish_id TikTok hands out (user, calling client, scope), kept for BROKER_TIKTOK_PUBLISH_TTL.
"""

from __future__ import annotations

import json
import logging

from broker.clock import Clock
from broker.errors import NotFound, StoreUnavailable
from broker.flows.posting_rules import STATUS_FETCH, PostingCall, check_posting_call
from broker.metrics import Metrics
from broker.store.publishes import PublishRecord, PublishStore

log = logging.getLogger("broker.tiktok_posting")


def published_id(body: bytes) -> str | None:
    """The publish_id of TikTok's successful init answer, or None."""
    try:
        answer = json.loads(body)
        error, data = answer.get("error"), answer.get("data")
    except (ValueError, RecursionError, AttributeError):  # RecursionError: nested deeper than the parser goes
        return None
    if not isinstance(error, dict) or error.get("code") != "ok" or not isinstance(data, dict):
        return None
    publish_id = data.get("publish_id")
    return publish_id if isinstance(publish_id, str) and publish_id else None


class Posting:
    def __init__(self, store: PublishStore, clock: Clock, *, ttl: int, metrics: Metrics | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.metrics = metrics or Metrics()

    @staticmethod
    def check(path: str, body: bytes) -> PostingCall | None:
        """The posting call on `path` with its body checked (InvalidRequest naming the field); None for others."""
        return check_posting_call(path, body)

    async def scopes(self, user_id: str, call: PostingCall) -> tuple[str, ...]:
        """The TikTok scopes the call needs. A status fetch is only for the user's own posts made through the
        broker, and needs the scope its post was made with; any other publish_id is not found."""
        if call.path != STATUS_FETCH:
            return call.scopes
        record = await self.store.get(user_id, call.publish_id, self.clock.now())
        if record is None:
            raise NotFound("No post with this publish_id was made for this user through the broker (or its "
                           "record has expired).")
        return (record.scope,)

    async def remember(self, user_id: str, client_id: str, call: PostingCall, answer: bytes) -> None:
        """Record the publish_id of TikTok's successful init. The post exists at TikTok by now, so a Redis failure
        here is logged and the answer still goes back: the caller can upload, only its status queries fail."""
        publish_id = published_id(answer) if call.kind else None
        if publish_id is None:
            return
        record = PublishRecord(publish_id, client_id, call.scopes[0], call.kind, self.clock.now())
        try:
            await self.store.record(user_id, record, ttl=self.ttl)
        except StoreUnavailable:
            self.metrics.redis_unavailable("publish_record")
            log.error("could not record publish_id %s of user %s: Redis unavailable", publish_id, user_id)

    async def record_of(self, user_id: str, publish_id: str) -> PublishRecord | None:
        return await self.store.get(user_id, publish_id, self.clock.now())
