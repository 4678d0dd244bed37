"""Which scopes an app asks for, may have and is granted: the broker's own (OpenID's, `account`) and TikTok's."""

from __future__ import annotations

from dataclasses import dataclass

from broker.client_entries import ACCOUNT_SCOPE, GRANT_REFRESH_TOKEN
from broker.clients import Client

OPENID = "openid"
PROFILE = "profile"
OFFLINE_ACCESS = "offline_access"
# The broker's own scopes; every other scope it knows is a TikTok scope, named as TikTok names it.
BROKER_SCOPES = (OPENID, PROFILE, OFFLINE_ACCESS, ACCOUNT_SCOPE)
DEFAULT_REQUEST = OPENID


@dataclass(frozen=True)
class Granted:
    scopes: tuple[str, ...]  # what the client gets if the user agrees, in the order asked
    refused: tuple[str, ...]  # known scopes the client is not registered for


class ScopePolicy:
    """`tiktok`: the TikTok scopes the broker asks for at sign-in; an app can be granted no other TikTok scope."""

    def __init__(self, tiktok: tuple[str, ...]) -> None:
        self.tiktok = tiktok

    def supported(self) -> tuple[str, ...]:
        return (*BROKER_SCOPES, *self.tiktok)

    def grant(self, requested: str | None, client: Client) -> Granted:
        """Scopes the broker does not know (`email`, say) are left out; `offline_access` is granted to a client
        that may refresh; any other known scope must be registered for the client."""
        names = dict.fromkeys((requested or DEFAULT_REQUEST).split())
        granted: list[str] = []
        refused: list[str] = []
        for name in names:
            if name == OFFLINE_ACCESS:
                if client.may_use(GRANT_REFRESH_TOKEN):
                    granted.append(name)
            elif name in BROKER_SCOPES or name in self.tiktok:
                (granted if name in client.scopes else refused).append(name)
        return Granted(tuple(granted), tuple(refused))


def broker_part(scopes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(scope for scope in scopes if scope in BROKER_SCOPES)


def tiktok_part(scopes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(scope for scope in scopes if scope not in BROKER_SCOPES)
