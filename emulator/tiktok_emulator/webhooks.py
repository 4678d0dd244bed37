"""Outgoing webhooks: TikTok's signed envelope (`authorization.removed`, the Content Posting and Share Kit events)
and its at-least-once delivery with backoff."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass

import httpx

from tiktok_emulator.clock import Clock
from tiktok_emulator.config import EmulatorConfig

AUTHORIZATION_REMOVED = "authorization.removed"
MAX_RETRIES = 1000  # guards a factor-1 schedule with a tiny step from looping forever


def sign(client_secret: str, timestamp: int, body: bytes) -> str:
    """Contract §6.1: lowercase hex HMAC-SHA256 keyed by the client secret over `"{t}." + raw body`."""
    payload = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(client_secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def signature_header(client_secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},s={sign(client_secret, timestamp, body)}"


def envelope(*, client_key: str, event: str, create_time: int, user_openid: str, content: dict[str, object]) -> bytes:
    """The raw body; `content` is itself JSON serialized to a string, so receivers parse twice."""
    compact = (",", ":")
    return json.dumps({
        "client_key": client_key,
        "event": event,
        "create_time": create_time,
        "user_openid": user_openid,
        "content": json.dumps(content, separators=compact),
    }, separators=compact).encode("utf-8")


def retry_delays(initial: float, factor: float, horizon: float) -> list[float]:
    """Exponential waits between attempts whose running total stays within the horizon."""
    delays: list[float] = []
    total, delay = 0.0, initial
    while total + delay <= horizon and len(delays) < MAX_RETRIES:
        delays.append(delay)
        total += delay
        delay *= factor
    return delays


@dataclass(frozen=True)
class DeliveryAttempt:
    event: str
    open_id: str
    attempt: int
    status: int | None  # None when the request itself failed (refused, timed out)
    error: str | None
    body: str
    signature: str
    duplicate: bool = False


class WebhookSender:
    def __init__(self, config: EmulatorConfig, clock: Clock, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._clock = clock
        self._client = client
        self._owns_client = client is None
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[DeliveryAttempt] = []

    @property
    def enabled(self) -> bool:
        return self._config.webhook_url is not None

    def authorization_removed(self, open_id: str, reason: int, *, duplicate: bool = False) -> bool:
        """Queue the event in the background (the caller's response must not wait); False if no webhook_url."""
        return self.send(AUTHORIZATION_REMOVED, open_id, {"reason": reason}, duplicate=duplicate)

    def send(self, event: str, open_id: str, content: dict[str, object], *, duplicate: bool = False) -> bool:
        """Queue any event for delivery in the background; False if no webhook_url is configured."""
        if not self.enabled:
            return False
        body = envelope(client_key=self._config.client_key, event=event, create_time=int(self._clock.now()),
                        user_openid=open_id, content=content)
        task = asyncio.create_task(self._deliver(event, body, open_id,
                                                 duplicate or self._config.webhook_duplicate_delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _deliver(self, event: str, body: bytes, open_id: str, duplicate: bool) -> None:
        cfg = self._config
        waits = [0.0, *retry_delays(cfg.webhook_retry_initial, cfg.webhook_retry_factor, cfg.webhook_retry_horizon)]
        for attempt, wait in enumerate(waits, start=1):
            if wait:
                await asyncio.sleep(wait)
            if await self._post(event, body, open_id, attempt, duplicate=False):
                break
        else:
            return  # horizon reached: TikTok drops the event
        if duplicate:
            # At-least-once delivery: receivers must cope with the same event twice.
            await self._post(event, body, open_id, attempt + 1, duplicate=True)

    async def _post(self, event: str, body: bytes, open_id: str, attempt: int, *, duplicate: bool) -> bool:
        url = self._config.webhook_url
        assert url is not None
        header = signature_header(self._config.client_secret, int(self._clock.now()), body)
        status: int | None = None
        error: str | None = None
        try:
            response = await self._http().post(url, content=body, headers={
                "Content-Type": "application/json", "TikTok-Signature": header})
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(DeliveryAttempt(event, open_id, attempt, status, error,
                                               body.decode("utf-8"), header, duplicate))
        return status == 200

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._config.webhook_timeout)
        return self._client

    async def drain(self) -> None:
        """Wait until every queued delivery has finished (succeeded, or exhausted its retries)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owns_client and self._client is not None:
            await self._client.aclose()
        self._client = None
