"""The TikTok Login Kit client: authorize URL with hex PKCE, token exchange, refresh, revoke and user info.

All of TikTok's quirks live here and in `tiktok_parse` (which reads the answers): `client_key` instead of
`client_id`, comma-separated scopes, a hex (not base64url) PKCE challenge, client credentials in the form
body, OAuth errors answered with HTTP 200, and the `{data, error}` envelope of the v2 API.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar
from urllib.parse import urlencode

import httpx

from broker.clock import Clock
from broker.domain import Identity, ProviderTokens
from broker.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable
from broker.metrics import Metrics
from broker.providers import tiktok_parse as parse
from broker.providers.base import Provider

DEFAULT_AUTHORIZE_URL = "https://www.tiktok.com/v2/auth/authorize/"
DEFAULT_API_URL = "https://open.tiktokapis.com"
# Fail fast on connect (TikTok is either reachable or not); allow slower reads for the token endpoint.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# TikTok rotates the refresh token when it handles a refresh: an answer we stop reading is the user's grant lost.
# So once a refresh is sent, its answer is awaited at least this long, whatever the per-call timeout. Callers need
# not wait with it: the refresh flow lets them go after the usual timeout and stores the answer when it comes.
REFRESH_PATIENCE = 60.0

logger = logging.getLogger("broker.providers.tiktok")

T = TypeVar("T")

_SIGN_IN_AGAIN = "TikTok no longer accepts this sign-in. Please sign in again."
_CODE_REJECTED = "This TikTok sign-in has expired or was already used. Please start again."
# The `endpoint` label of each operation's metrics.
_ENDPOINTS = {"code exchange": "token", "refresh": "refresh", "revoke": "revoke", "user info": "user_info"}


def pkce_challenge(verifier: str) -> str:
    """TikTok's S256 challenge: lowercase *hex* SHA-256 of the verifier.

    RFC 7636 says base64url; TikTok's docs and SDKs say hex, and a base64url challenge fails at the token
    step with "Code verifier or code challenge is invalid"."""
    return hashlib.sha256(verifier.encode()).hexdigest()


def new_code_verifier() -> str:
    """A fresh PKCE verifier: 64 chars of [A-Za-z0-9_-] (inside TikTok's 43-128 unreserved), 384 bits."""
    return secrets.token_urlsafe(48)


def _scrub(text: str, sensitive: Iterable[str]) -> str:
    """Belt and braces: TikTok's free text (error_description) must not smuggle a credential into our logs."""
    for value in sensitive:
        if value:
            text = text.replace(value, "[redacted]")
    return text


def error_kind(error: UpstreamError) -> str:
    """The `kind` label of a failed TikTok call: no usable answer in time, a refusal, or anything else."""
    if isinstance(error, UpstreamUnavailable):
        return "unavailable"
    return "rejected" if isinstance(error, UpstreamRejected) else "error"


class TikTokProvider:
    """`Provider` for TikTok Login Kit v2. Stateless apart from configuration; safe to share across tasks."""

    name: str = "tiktok"

    def __init__(self, http_client: httpx.AsyncClient, *, client_key: str, client_secret: str, clock: Clock,
                 authorize_url: str = DEFAULT_AUTHORIZE_URL, api_url: str = DEFAULT_API_URL,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, metrics: Metrics | None = None) -> None:
        self._http = http_client
        self._client_key = client_key
        self._client_secret = client_secret
        self._clock = clock
        self._authorize_endpoint = authorize_url
        self._api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._metrics = metrics or Metrics()

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a traceback's locals
        return f"TikTokProvider(client_key={self._client_key!r}, api_url={self._api_url!r})"

    # -- browser leg --

    def authorize_url(self, *, state: str, code_verifier: str, redirect_uri: str,
                      scopes: tuple[str, ...], force_consent: bool = False) -> str:
        if not scopes:
            raise ValueError("TikTok requires at least one scope (user.info.basic)")
        params = {
            "client_key": self._client_key,
            "response_type": "code",
            "scope": ",".join(dict.fromkeys(scopes)),  # commas, not spaces; dict keeps order, drops repeats
            "redirect_uri": redirect_uri,
            "state": state,
            # Sent for web too: TikTok has enforced PKCE on web authorizations since late 2024.
            "code_challenge": pkce_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if force_consent:
            params["disable_auto_auth"] = "1"  # always show consent, so the user can switch accounts
        separator = "&" if "?" in self._authorize_endpoint else "?"
        return self._authorize_endpoint + separator + urlencode(params)

    # -- server leg --

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> ProviderTokens:
        form = {
            "client_key": self._client_key,
            "client_secret": self._client_secret,
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,  # must equal the authorize request's value byte for byte
            "code_verifier": code_verifier,  # always: we always send a challenge
        }
        return await self._guarded("code exchange", (code, code_verifier),
                                   lambda: self._token_call("code exchange", form, _CODE_REJECTED))

    async def refresh(self, refresh_token: str) -> ProviderTokens:
        """Slow by design when TikTok is slow (see REFRESH_PATIENCE): run it where the caller can stop waiting."""
        form = {
            "client_key": self._client_key,
            "client_secret": self._client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        # TikTok rotates refresh tokens: the caller must persist the returned one and drop the old one.
        return await self._guarded("refresh", (refresh_token,),
                                   lambda: self._token_call("refresh", form, _SIGN_IN_AGAIN, patient=True))

    async def revoke(self, access_token: str) -> None:
        form = {"client_key": self._client_key, "client_secret": self._client_secret, "token": access_token}

        async def call() -> None:
            response = await self._send("revoke", "POST", "/v2/oauth/revoke/", data=form)
            parse.parse_revoke_response("revoke", response)

        await self._guarded("revoke", (access_token,), call)

    async def fetch_identity(self, tokens: ProviderTokens) -> Identity:
        fields = ",".join(parse.fields_for_scopes(tokens.scopes))

        async def call() -> Identity:
            response = await self._send("user info", "GET", "/v2/user/info/", params={"fields": fields},
                                        headers={"Authorization": f"Bearer {tokens.access_token}"})
            return parse.parse_user_info("user info", response, tokens, self.name)

        return await self._guarded("user info", (tokens.access_token, tokens.refresh_token), call)

    # -- plumbing --

    async def _token_call(self, op: str, form: dict[str, str], rejected: str, *,
                          patient: bool = False) -> ProviderTokens:
        # Read the clock before the call: expiry instants err on the early side by the request's duration.
        issued_at = self._clock.now()
        timeout = self._timeout
        if patient:  # connecting stays quick: a request that never reached TikTok rotated nothing
            timeout = httpx.Timeout(connect=timeout.connect, read=max(REFRESH_PATIENCE, timeout.read or 0.0),
                                    write=timeout.write, pool=timeout.pool)
        response = await self._send(op, "POST", "/v2/oauth/token/", data=form, limits=timeout)
        return parse.parse_token_response(op, response, issued_at=issued_at, rejected_description=rejected)

    async def _send(self, op: str, method: str, path: str, *, data: dict[str, str] | None = None,
                    params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                    limits: httpx.Timeout | None = None) -> httpx.Response:
        """One request with our timeout, no client-level auth (secrets go in the body), no redirects;
        transport failures become UpstreamUnavailable, chained to the httpx exception."""
        request_headers = {"Accept": "application/json", "Cache-Control": "no-cache", **(headers or {})}
        try:
            return await self._http.request(
                method, self._api_url + path, data=data, params=params, headers=request_headers,
                timeout=limits or self._timeout, auth=None, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable("TikTok did not answer in time. Please try again shortly.",
                                      log_detail=f"tiktok {op}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(log_detail=f"tiktok {op}: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # e.g. a body that fails content decoding
            raise UpstreamError(log_detail=f"tiktok {op}: {type(exc).__name__}: {exc}") from exc

    async def _guarded(self, op: str, sensitive: tuple[str, ...], call: Callable[[], Awaitable[T]]) -> T:
        """The one place provider calls are measured and their failures logged: with TikTok's log_id, never
        with a credential."""
        started = time.perf_counter()
        try:
            result = await call()
        except UpstreamError as exc:
            self._metrics.observe_tiktok(_ENDPOINTS[op], time.perf_counter() - started, error_kind(exc))
            exc.log_detail = _scrub(exc.log_detail, (*sensitive, self._client_secret))
            logger.warning("TikTok %s failed -> %s (%d): %s",
                           op, type(exc).__name__, exc.status, exc.log_detail)
            raise
        self._metrics.observe_tiktok(_ENDPOINTS[op], time.perf_counter() - started)
        return result


# Static check that the class satisfies the port (mypy --strict fails here if a signature drifts).
_conforms: type[Provider] = TikTokProvider
