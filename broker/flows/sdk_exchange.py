"""The TikTok SDK code exchange (RFC 8693 token exchange): a mobile app trades the authorization code and PKCE
verifier TikTok's SDK gave it for the broker's own tokens.

The app's backend would otherwise exchange the code at TikTok itself. Here the broker does it, with its own client
key and secret and the app's exact TikTok redirect URI, then links the user as /callback does (the same user record
by open_id, TikTok's tokens sealed in the vault) under a session of kind app, and answers with the broker's tokens
only: TikTok's never reach the app. Everything the broker can check is checked before TikTok is called, and a
code is exchanged once: a replay is refused without calling TikTok again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from broker.client_entries import GRANT_TOKEN_EXCHANGE
from broker.clients import Client
from broker.errors import (
    BrokerError,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
    UpstreamRefusedRequest,
    UpstreamRejected,
)
from broker.flows.devices import MAX_LABEL, device_label
from broker.flows.login import LoginFlow
from broker.flows.oidc_tokens import OidcTokens
from broker.flows.scopes import ScopePolicy
from broker.flows.sessions import AppSignIn
from broker.providers.base import Provider
from broker.store.once import OnceMarkers

log = logging.getLogger("broker.sdk_exchange")

SUBJECT_TOKEN_TYPE = "urn:tiktok-broker:token-type:tiktok-authorization-code"  # noqa: S105 (a type name)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a type name)
# TikTok documents 43-128 characters; its Android SDK makes 32 (tiktok-login-kit.md section 2.4).
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{32,128}$")
MAX_CODE = 1024
# A code TikTok handed out is dead long before this; the marker only has to outlive it.
CODE_MARKER_TTL = 3600
MARKER_SCOPE = "tiktok-code"
REFUSED_CODE = "TikTok did not accept this code with this code_verifier and redirect_uri (expired, used or wrong)."


@dataclass(frozen=True)
class ExchangeRequest:
    """The parameters of one SDK exchange, checked for shape."""

    code: str
    code_verifier: str
    redirect_uri: str
    scope: str | None
    audiences: tuple[str, ...]  # RFC 8693's `audience` and `resource`: where the app means to use the token


def parse_request(params: Mapping[str, str]) -> ExchangeRequest:
    """The exchange's parameters, or InvalidRequest naming what is missing or unsupported (each parameter
    appears at most once: the token endpoint refuses repeats before this)."""
    missing = [name for name in ("subject_token", "subject_token_type", "code_verifier", "redirect_uri")
               if not params.get(name)]
    if missing:
        raise InvalidRequest(f"The TikTok SDK exchange needs {', '.join(missing)}.")
    if params["subject_token_type"] != SUBJECT_TOKEN_TYPE:
        raise InvalidRequest(f"subject_token_type must be {SUBJECT_TOKEN_TYPE} (the code TikTok's SDK returned).")
    if "actor_token" in params or "actor_token_type" in params:
        raise InvalidRequest("Delegation (actor_token) is not supported.")
    requested = params.get("requested_token_type")
    if requested is not None and requested != ACCESS_TOKEN_TYPE:
        raise InvalidRequest(f"requested_token_type may only be {ACCESS_TOKEN_TYPE}.")
    code = params["subject_token"]
    if len(code) > MAX_CODE or not code.isprintable():
        raise InvalidRequest("subject_token is not a TikTok authorization code.")
    if not VERIFIER.fullmatch(params["code_verifier"]):
        raise InvalidRequest("code_verifier must be 32-128 characters of A-Z a-z 0-9 - . _ ~ (as the SDK made it).")
    audiences = tuple(params[name] for name in ("audience", "resource") if params.get(name))
    return ExchangeRequest(code, params["code_verifier"], params["redirect_uri"], params.get("scope"), audiences)


def device_of(params: Mapping[str, str], user_agent: str) -> str:
    """The account page's label for the device: the app's `device_name` (what the user calls the phone), else
    what its User-Agent says."""
    named = params.get("device_name", "").strip()
    if named and named.isprintable():
        return named[:MAX_LABEL]
    return device_label(user_agent) or "Mobile app"


class SdkExchange:
    def __init__(self, *, login: LoginFlow, provider: Provider, oidc_tokens: OidcTokens, scopes: ScopePolicy,
                 once: OnceMarkers) -> None:
        self.login = login
        self.provider = provider
        self.oidc_tokens = oidc_tokens
        self.scopes = scopes
        self.once = once

    def _check(self, client: Client, request: ExchangeRequest) -> tuple[str, ...]:
        """Everything decided before TikTok is called: the client, its TikTok redirect URI, audience and scopes;
        the scopes granted."""
        if client.confidential or not client.may_use(GRANT_TOKEN_EXCHANGE):
            raise UnauthorizedClient("This client may not exchange TikTok SDK codes.")
        if request.redirect_uri not in client.tiktok_redirect_uris:
            raise UnauthorizedClient("This redirect_uri is not one of the client's tiktok_redirect_uris.")
        if any(audience != client.token_audience for audience in request.audiences):
            raise InvalidTarget(f"This client's tokens are for {client.token_audience} only.")
        granted = self.scopes.grant(request.scope, client)
        if granted.refused:
            raise InvalidScope(f"Not available to this client: {' '.join(granted.refused)}.")
        return granted.scopes

    async def exchange(self, params: Mapping[str, str], client: Client, *, user_agent: str = "",
                       ip: str = "", jkt: str = "") -> dict[str, object]:
        """The RFC 8693 answer: the broker's access token (and refresh token, ID token), never TikTok's."""
        request = parse_request(params)
        scopes = self._check(client, request)
        # Spent here, before TikTok is called: a replay never reaches TikTok, whoever sends it. (It revokes
        # nothing: without the verifier a replayed code is worthless, so a replay is no sign of theft.)
        if not await self.once.first(MARKER_SCOPE, request.code, CODE_MARKER_TTL):
            raise InvalidGrant("This TikTok authorization code was already exchanged.")
        try:
            tokens = await self.provider.exchange_code(code=request.code, redirect_uri=request.redirect_uri,
                                                       code_verifier=request.code_verifier)
        except (UpstreamRejected, UpstreamRefusedRequest) as refused:
            # TikTok's log_id stays in the log (log_detail), never in the answer.
            raise InvalidGrant(REFUSED_CODE, log_detail=refused.log_detail) from refused
        except BrokerError:
            await self.once.forget(MARKER_SCOPE, request.code)  # TikTok away: the app may try the code again
            raise
        created = await self.login.link(tokens, ip=ip,
                                        app=AppSignIn(client.client_id, device_of(params, user_agent)))
        family_sid, body = await self.oidc_tokens.issue(created.session, client, scopes,
                                                        auth_time=created.session.created_at, jkt=jkt)
        log.info("TikTok SDK code exchanged", extra={"client_id": client.client_id, "sid": family_sid})
        return {**body, "issued_token_type": ACCESS_TOKEN_TYPE}
