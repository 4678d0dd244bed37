"""A logged-in session without TikTok: written straight through the broker's own records and sessions APIs."""

from __future__ import annotations

from typing import Any, cast

from broker.app import create_app
from broker.clock import SystemClock
from broker.config import Settings
from broker.domain import Identity, ProviderTokens
from broker.flows.sessions import new_user_id
from broker.store.redis import create_redis
from broker.web.services import Services

OPEN_ID = "bench-open-id-0001"


async def create_session(settings: Settings) -> str:
    """Save a user, sealed (fake) TikTok tokens and a session as a login would; returns the cookie value."""
    redis = create_redis(settings.redis_url.reveal())
    try:
        # The composition root wires Records and SessionService exactly as the served broker does.
        services: Services = create_app(settings, redis=redis).state.services
        sessions = services.sessions
        now = SystemClock().now()
        identity = Identity(provider="tiktok", subject=OPEN_ID, display_name="Bench User")
        tokens = ProviderTokens(subject=OPEN_ID, access_token="act.bench", refresh_token="rft.bench",  # noqa: S106
                                expires_at=now + 7200, refresh_expires_at=now + 86_400,
                                scopes=frozenset(settings.tiktok_scopes))
        user_id = await sessions.records.claim_user_id(OPEN_ID, new_user_id())
        created = sessions.new_session(user_id, identity, tokens)
        await sessions.records.save_login(user_id, identity, tokens, created.session, now)
        return created.cookie_value
    finally:
        await cast(Any, redis).aclose()
