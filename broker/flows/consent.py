"""Consent for third-party apps: whether the user already let an app have a set of scopes, recording a new
consent, and the list of connected apps the account page shows. First-party apps never ask."""

from __future__ import annotations

from dataclasses import dataclass

from broker.clients import Client, ClientRegistry
from broker.clock import Clock
from broker.flows.scopes import OFFLINE_ACCESS, OPENID, PROFILE, tiktok_part
from broker.store.consents import Consents

# What the consent page says each broker scope gives the app; TikTok scopes are described by TikTok's names.
SCOPE_WORDS = {OPENID: "Know who you are (a stable id for your account)",
               PROFILE: "Your TikTok display name, username and avatar",
               OFFLINE_ACCESS: "Stay connected when you are not using it (until you revoke it here)"}


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    name: str
    scopes: tuple[str, ...]
    first_used: float
    last_used: float


@dataclass(frozen=True)
class ConsentRequest:
    """What the consent page shows: the app, what it gets from the broker, which TikTok scopes."""

    request_id: str
    client_id: str
    app_name: str
    described: tuple[str, ...]
    tiktok_scopes: tuple[str, ...]
    redirect_uri: str  # where the answer goes


def describe(client: Client, request_id: str, scopes: tuple[str, ...], redirect_uri: str) -> ConsentRequest:
    return ConsentRequest(request_id, client.client_id, client.name,
                          tuple(SCOPE_WORDS[scope] for scope in scopes if scope in SCOPE_WORDS), tiktok_part(scopes),
                          redirect_uri)


class ConsentFlow:
    def __init__(self, *, store: Consents, clients: ClientRegistry, clock: Clock) -> None:
        self.store = store
        self.clients = clients
        self.clock = clock

    async def covers(self, user_id: str, client: Client, scopes: tuple[str, ...]) -> bool:
        """Whether the user already let this app have every scope asked for (a first-party app always may)."""
        if client.first_party:
            return True
        consent = await self.store.get(user_id, client.client_id)
        return consent is not None and set(scopes) <= set(consent.scopes)

    async def grant(self, user_id: str, client: Client, scopes: tuple[str, ...]) -> None:
        if not client.first_party:
            await self.store.grant(user_id, client.client_id, scopes, self.clock.now())

    async def used(self, user_id: str, client: Client) -> None:
        if not client.first_party:
            await self.store.touch(user_id, client.client_id, self.clock.now())

    async def connected_apps(self, user_id: str, last_seen: dict[str, float] | None = None) -> list[ConnectedApp]:
        """The apps the user consented to, most recently used first; `last_seen`: the latest use of each app's
        refresh families, by client id (a refresh counts as a use)."""
        apps = []
        for consent in await self.store.all(user_id):
            client = self.clients.get(consent.client_id)
            last = max(consent.last_at, (last_seen or {}).get(consent.client_id, 0.0))
            apps.append(ConnectedApp(consent.client_id, client.name if client else consent.client_id,
                                     consent.scopes, consent.first_at, last))
        return sorted(apps, key=lambda app: -app.last_used)
