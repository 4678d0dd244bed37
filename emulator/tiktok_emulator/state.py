"""The running emulator's in-memory world (`app.state.emulator`) and the test hooks it offers."""

from __future__ import annotations

from typing import Any, cast

import httpx
from starlette.requests import Request

from tiktok_emulator.clock import Clock
from tiktok_emulator.config import CLIENT_TOKEN_TTL, EmulatorConfig
from tiktok_emulator.faults import Fault, FaultBook, parse_fault
from tiktok_emulator.posts import PostBook
from tiktok_emulator.ratelimit import SlidingWindow, TokenWindows
from tiktok_emulator.sessions import ConsentBook
from tiktok_emulator.tokenstore import IssuedToken, TokenStore
from tiktok_emulator.users import UserDirectory
from tiktok_emulator.webhooks import WebhookSender

POSTING_LIMITS = {"creator_info": 20, "video_init": 6, "inbox_init": 6, "content_init": 6, "status_fetch": 30}


class EmulatorState:
    def __init__(self, config: EmulatorConfig, clock: Clock,
                 webhook_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.clock = clock
        self.users = UserDirectory(config)
        self.consents = ConsentBook(clock, code_ttl=config.code_ttl, consent_ttl=config.consent_ttl)
        self.tokens = TokenStore(clock, access_ttl=config.access_ttl, refresh_ttl=config.refresh_ttl,
                                 client_ttl=CLIENT_TOKEN_TTL, resets_deadline=config.refresh_resets_deadline,
                                 old_access_survives=config.old_access_token_survives_refresh)
        self.faults = FaultBook()
        self.user_info_window = SlidingWindow(clock, config.rate_limit_per_minute)
        self.video_list_window = SlidingWindow(clock, config.rate_limit_per_minute)
        self.video_query_window = SlidingWindow(clock, config.rate_limit_per_minute)
        self.webhooks = WebhookSender(config, clock, webhook_client)
        self.posts = PostBook(config, clock, self.webhooks)
        # Content Posting limits, per user access token and endpoint (contract §13).
        self.posting_windows = {endpoint: TokenWindows(clock, limit) for endpoint, limit in POSTING_LIMITS.items()}
        # One record per API call, oldest first: {"endpoint", "grant_type", "token", "status", "error", "time"}.
        self.calls: list[dict[str, Any]] = []

    def record_call(self, endpoint: str, *, grant_type: str | None, token: str | None, status: int,
                    error: str | None) -> None:
        self.calls.append({"endpoint": endpoint, "grant_type": grant_type, "token": token, "status": status,
                           "error": error, "time": self.clock.now()})

    def set_fault(self, endpoint: str = "*", mode: str = "http_500", *, latency_ms: int = 0,
                  count: int | None = None) -> Fault:
        """Make `endpoint` misbehave for the next `count` calls (None: until `clear_faults`)."""
        fault = parse_fault({"endpoint": endpoint, "mode": mode, "latency_ms": latency_ms, "count": count})
        if isinstance(fault, str):
            raise ValueError(fault)
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def expire_access_token(self, token: str) -> bool:
        """Make an access token expired as of now; False if the emulator never issued it."""
        return self.tokens.expire(token)

    def issued_tokens_for(self, open_id: str) -> list[IssuedToken]:
        return self.tokens.issued_for(open_id)

    def remove_authorization(self, open_id: str, reason: int, *, duplicate: bool = False) -> tuple[int, bool]:
        """The user/app link is gone: tokens die first (TikTok's webhook arrives after), then the event is queued.

        Returns (tokens revoked, webhook queued).
        """
        revoked = self.tokens.revoke_user(open_id)
        self.consents.forget(open_id)
        return revoked, self.webhooks.authorization_removed(open_id, reason, duplicate=duplicate)

    def reset(self) -> None:
        """Forget everything issued or recorded; configuration and seeded users stay."""
        self.consents.clear()
        self.tokens.clear()
        self.faults.clear()
        self.user_info_window.clear()
        self.video_list_window.clear()
        self.video_query_window.clear()
        for windows in self.posting_windows.values():
            windows.clear()
        self.posts.clear()
        self.users.clear_typed()
        self.calls.clear()
        self.webhooks.deliveries.clear()


def emulator(request: Request) -> EmulatorState:
    return cast(EmulatorState, request.app.state.emulator)
