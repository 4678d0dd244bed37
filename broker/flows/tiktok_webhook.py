"""TikTok's webhooks: signature and replay checks, each event handled once, `authorization.removed` acted on,
posting events passed on downstream (flows/post_events.py), unknown event types acknowledged and counted."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

from broker.clock import Clock
from broker.errors import BrokerError, InvalidRequest
from broker.flows.account import AccountFlow
from broker.flows.post_events import POST_EVENTS, PostEvents
from broker.metrics import Metrics
from broker.store.once import OnceMarkers

log = logging.getLogger("broker.tiktok_webhook")

TOLERANCE = 300  # seconds between TikTok's timestamp and our clock
DEDUPE_TTL = 4 * 86400  # TikTok retries for 72 hours
# Events with nothing for the broker to do (Data Portability); any other name not handled here is "unknown".
IGNORED_EVENTS = frozenset({"portability.download.ready"})
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"[0-9A-Fa-f]{64}")


class InvalidSignature(BrokerError):
    code = "invalid_signature"
    status = 401
    default_description = "The TikTok-Signature header is missing, malformed, stale or wrong."


def parse_signature_header(header: str | None) -> tuple[str, str]:
    """(t, s) from `t=<unix seconds>,s=<hex>`; InvalidSignature for anything else."""
    if not header or len(header) > 200:
        raise InvalidSignature(log_detail="missing or oversized header")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name in parts:
            raise InvalidSignature(log_detail="malformed header")
        parts[name] = value
    t, s = parts.get("t", ""), parts.get("s", "")
    # ASCII only: str.isdigit() also accepts "²" and other digits int() refuses, and a non-ASCII signature would
    # make compare_digest raise.
    if not TIMESTAMP.fullmatch(t) or not SIGNATURE.fullmatch(s):
        raise InvalidSignature(log_detail="malformed header")
    return t, s


class TikTokWebhooks:
    def __init__(self, *, client_key: str, client_secret: str, once: OnceMarkers, account: AccountFlow,
                 posts: PostEvents, metrics: Metrics, clock: Clock) -> None:
        self.client_key = client_key
        self.posts = posts
        self._secret = client_secret.encode()
        self.once = once
        self.account = account
        self.metrics = metrics
        self.clock = clock

    def verify(self, header: str | None, body: bytes) -> None:
        t, signature = parse_signature_header(header)
        expected = hmac.new(self._secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise InvalidSignature(log_detail="signature mismatch")
        if abs(self.clock.now() - int(t)) > TOLERANCE:
            raise InvalidSignature(log_detail="timestamp outside the replay window")

    async def receive(self, header: str | None, body: bytes) -> str:
        """"processed", "duplicate", "ignored" or "unknown" (an event type the broker does not know: acknowledged,
        so TikTok stops retrying, and counted); InvalidSignature (401) or InvalidRequest (400) otherwise."""
        try:
            self.verify(header, body)
        except InvalidSignature:
            self.metrics.tiktok_webhooks.labels("bad_signature").inc()
            raise
        envelope = _parse(body)
        if envelope["client_key"] != self.client_key:
            raise InvalidRequest("The event is for another app.")
        event = envelope["event"]
        if event in POST_EVENTS:
            # TikTok's events carry no id: the event, user, time and content together name one.
            source = json.dumps([event, envelope["user_openid"], envelope["create_time"], envelope["content"]],
                                sort_keys=True, separators=(",", ":"))
            outcome = await self.posts.handle(event, envelope["user_openid"], envelope["content"], source)
            self.metrics.tiktok_webhooks.labels(outcome).inc()
            return outcome
        if event != "authorization.removed" and event not in IGNORED_EVENTS:
            self.metrics.tiktok_webhooks.labels("unknown").inc()
            log.warning("tiktok webhook of an unknown type acknowledged: %r", event[:80])
            return "unknown"
        identity = f"{envelope['event']}|{envelope['user_openid']}|{envelope['create_time']}"
        if not await self.once.first("tiktok-webhook", identity, DEDUPE_TTL):
            self.metrics.tiktok_webhooks.labels("duplicate").inc()
            return "duplicate"
        try:
            outcome = await self._handle(envelope)
        except BaseException:
            await self.once.forget("tiktok-webhook", identity)  # TikTok will retry; let that retry through
            raise
        self.metrics.tiktok_webhooks.labels(outcome).inc()
        return outcome

    async def _handle(self, envelope: dict[str, Any]) -> str:
        if envelope["event"] != "authorization.removed":
            return "ignored"  # video and portability events: nothing of ours to do
        reason = envelope["content"].get("reason", 0)
        if not isinstance(reason, int) or isinstance(reason, bool):
            raise InvalidRequest("content.reason must be an integer.")
        found = await self.account.deauthorize(str(envelope["user_openid"]), reason)
        log.info("tiktok authorization removed (reason %s)%s", reason, "" if found else " for an unknown user")
        return "processed"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise InvalidRequest("The body is not JSON.") from None
    if not isinstance(envelope, dict):
        raise InvalidRequest("The body must be a JSON object.")
    for name, kind in (("client_key", str), ("event", str), ("create_time", int), ("user_openid", str),
                       ("content", str)):
        if not isinstance(envelope.get(name), kind) or isinstance(envelope.get(name), bool):
            raise InvalidRequest(f"The field {name} is missing or has the wrong type.")
    try:
        content = json.loads(envelope["content"])  # TikTok sends a JSON document inside a string
    except (ValueError, RecursionError):
        raise InvalidRequest("content is not a JSON document.") from None
    if not isinstance(content, dict):
        raise InvalidRequest("content must be a JSON object.")
    envelope["content"] = content
    return envelope
