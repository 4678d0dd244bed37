"""A logged-in session without TikTok: written straight through the broker's own records and sessions APIs."""

from __future__ import annotations

from typing import Any, cast

from broker.app import create_app
from broker.clock import SystemClock
from broker.config import Settings
from broker.domain import Identity, ProviderTokens, TokenPair
from broker.flows.sessions import new_user_id
from broker.store.redis import create_redis
from broker.web.services import Services

OPEN_ID = "bench-open-id-0001"


async def create_session(settings: Settings) -> str:
    """Save a user, sealed (fake) TikTok tokens and a session as a login would; returns the cookie value."""
    return (await _signed_in(settings, families_for=None, count=0))[0]


async def app_families(settings: Settings, client_id: str, count: int) -> list[TokenPair]:
    """`count` refresh families of a client for one signed-in user, as the code exchange of an OpenID sign-in
    (scope openid) would have started them: each its first token pair."""
    return (await _signed_in(settings, families_for=client_id, count=count))[1]


async def _signed_in(settings: Settings, *, families_for: str | None, count: int) -> tuple[str, list[TokenPair]]:
    redis = create_redis(settings.redis_url.reveal())
    try:
        # The composition root wires Records, SessionService and TokenFlow exactly as the served broker does.
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
        client = services.clients.get(families_for) if families_for else None
        pairs = [await services.tokens.start_family(created.session, client=client, client_scopes=("openid",))
                 for _ in range(count if client is not None else 0)]
        return created.cookie_value, pairs
    finally:
        await cast(Any, redis).aclose()
