"""The provider port, in the broker's words: what any upstream login must offer the flows."""

from __future__ import annotations

from typing import Protocol

from broker.domain import Identity, ProviderTokens


class Provider(Protocol):
    name: str

    def authorize_url(self, *, state: str, code_verifier: str, redirect_uri: str,
                      scopes: tuple[str, ...], force_consent: bool = False) -> str:
        """Where to send the browser to sign in; the provider derives the PKCE challenge itself."""
        ...

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> ProviderTokens:
        ...

    async def refresh(self, refresh_token: str) -> ProviderTokens:
        ...

    async def fetch_identity(self, tokens: ProviderTokens) -> Identity:
        ...

    async def revoke(self, access_token: str) -> None:
        ...
