"""TikTok's posting webhooks become downstream events: `post.publish.*` (and the Share Kit's two events) map to
`tiktok.post.*` with the broker `sub`, the publish_id, the post_id where TikTok gives one and the client that
made the post, emitted once per TikTok event through the events stream and the durable outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from broker.errors import InvalidRequest
from broker.flows.events import Events
from broker.flows.tiktok_posting import Posting
from broker.store.accounts import Accounts

log = logging.getLogger("broker.post_events")

# TikTok's event name → ours (TikTok spells "publicaly" in one of them; ours are spelled right).
POST_EVENTS: Mapping[str, str] = {
    "post.publish.failed": "tiktok.post.failed",
    "post.publish.complete": "tiktok.post.complete",
    "post.publish.inbox_delivered": "tiktok.post.inbox_delivered",
    "post.publish.publicly_available": "tiktok.post.publicly_available",
    "post.publish.no_longer_publicaly_available": "tiktok.post.no_longer_publicly_available",
    "video.upload.failed": "tiktok.post.share_failed",
    "video.publish.completed": "tiktok.post.share_completed",
}
MAX_VALUE = 128  # characters of any value copied from TikTok's content
SEEN_FOR = 4 * 86400  # TikTok retries for 72 hours


def _value(content: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = content.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # post ids are 19-digit numbers: downstream gets them as strings, never rounded
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_VALUE:
        raise InvalidRequest(f"content.{name} must be a string of 1 to {MAX_VALUE} characters.")
    return value


def _post_data(content: Mapping[str, Any]) -> dict[str, str | None]:
    return {"publish_id": _value(content, "publish_id", required=True),
            "publish_type": _value(content, "publish_type"),
            "post_id": _value(content, "post_id"),
            "reason": _value(content, "reason")}


class PostEvents:
    def __init__(self, *, accounts: Accounts, posting: Posting, events: Events) -> None:
        self.accounts = accounts
        self.posting = posting
        self.events = events

    async def handle(self, event: str, open_id: str, content: Mapping[str, Any], source: str) -> str:
        """"processed", "duplicate" (already emitted for this `source`) or "ignored" (a user we do not know)."""
        kind = POST_EVENTS[event]
        if event.startswith("post.publish."):
            data = _post_data(content)
        else:
            data = {"share_id": _value(content, "share_id", required=True)}
        user_id = await self.accounts.user_id_for(open_id)
        if user_id is None:
            log.info("tiktok %s for a user the broker does not know (deleted, or never signed in)", event)
            return "ignored"
        publish_id = data.get("publish_id")
        if publish_id is not None:
            record = await self.posting.record_of(user_id, publish_id)
            if record is not None:
                data["client_id"] = record.client_id
            else:
                log.info("tiktok %s for publish_id %s: no record (made elsewhere, or older than the TTL)", event,
                         publish_id)
        emitted = await self.events.emit_once(kind, source=source, sub=user_id,
                                              data={k: v for k, v in data.items() if v is not None}, ttl=SEEN_FOR)
        return "processed" if emitted else "duplicate"
