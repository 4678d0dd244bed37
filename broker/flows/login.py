"""Browser login through TikTok: /login starts an attempt, /callback finishes it and opens a session.

Incremental consent: `/login?add_scope=video.publish` asks TikTok for the scopes the user already granted plus the
added ones. Nothing changes until TikTok confirms: the callback then stores the new grant in place of the old one,
and a refusal at TikTok leaves the old grant and session as they were."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from broker.clock import Clock
from broker.domain import LoginAttempt, ProviderTokens, Session
from broker.errors import (
    AccessDenied,
    BrokerError,
    InvalidRequest,
    LoginFailed,
    StoreUnavailable,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from broker.flows.return_urls import ReturnUrlPolicy
from broker.flows.sessions import AppSignIn, NewSession, SessionService, new_user_id
from broker.metrics import Metrics
from broker.providers.base import Provider
from broker.store.records import AccountDeleted, Records

log = logging.getLogger("broker.login")

BINDING_BYTES = 32
# The TikTok scopes `add_scope` may name (Login Kit, Display API, Content Posting). Anything else is refused here
# rather than sent on to an error page at TikTok.
ADDABLE_SCOPES = frozenset({"user.info.basic", "user.info.profile", "user.info.stats", "video.list",
                            "video.publish", "video.upload"})


def added_scopes(value: str | None) -> tuple[str, ...]:
    """The scopes of an `add_scope` parameter (comma- or space-separated); InvalidRequest for unknown ones."""
    names = tuple(dict.fromkeys(part for part in (value or "").replace(",", " ").split() if part))
    unknown = [name for name in names if name not in ADDABLE_SCOPES]
    if unknown or len(value or "") > 256:
        raise InvalidRequest(f"add_scope may name only these TikTok scopes: {', '.join(sorted(ADDABLE_SCOPES))}.")
    return names


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _valid_binding(value: str | None) -> bool:
    return value is not None and 40 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()


def login_outcome(error: BrokerError) -> str:
    """The `outcome` label of a login that failed with `error`."""
    if isinstance(error, AccessDenied):
        return "denied"  # the person said no on TikTok's consent page
    if isinstance(error, LoginFailed):
        return "invalid"  # unknown or replayed state, foreign browser, TikTok's error= answer, no code
    if isinstance(error, StoreUnavailable):
        return "store_unavailable"
    if isinstance(error, UpstreamUnavailable):
        return "tiktok_unavailable"
    if isinstance(error, UpstreamRejected):
        return "tiktok_rejected"
    return "tiktok_error" if isinstance(error, UpstreamError) else "error"


@dataclass(frozen=True)
class LoginStart:
    redirect_url: str
    binding_value: str


@dataclass(frozen=True)
class LoginResult:
    session: Session
    cookie_value: str
    return_to: str


@dataclass(frozen=True)
class LoginPolicy:
    redirect_uri: str
    scopes: tuple[str, ...]
    attempt_ttl: int
    # return_to URLs starting with one of these take a failed sign-in themselves, as `error=<code>` (an app's
    # authorization request must hear of it: OpenID wants no dead end on the provider's page).
    failures_return_to: tuple[str, ...] = ()


class SignInAbandoned(Exception):
    """A sign-in failed after its attempt was verified, for a return_to that takes failures: go there."""

    def __init__(self, location: str, cause: BrokerError) -> None:
        super().__init__(cause.description)
        self.location = location
        self.cause = cause


class LoginFlow:
    def __init__(self, *, records: Records, provider: Provider, sessions: SessionService,
                 return_urls: ReturnUrlPolicy, policy: LoginPolicy, clock: Clock,
                 metrics: Metrics | None = None) -> None:
        self.records = records
        self.provider = provider
        self.sessions = sessions
        self.return_urls = return_urls
        self.policy = policy
        self.clock = clock
        self.metrics = metrics or Metrics()

    async def start(self, *, return_to: str | None, binding_value: str | None, force_consent: bool = False,
                    add_scope: str | None = None, user_id: str | None = None) -> LoginStart:
        """Record a login attempt under a fresh state and build TikTok's authorize URL.

        The browser-binding value is reused when the browser already has one, so logins started in
        several tabs at once all complete (each attempt stores the same binding hash). With `add_scope`, TikTok
        is asked for the configured scopes, those the signed-in user (`user_id`) granted last, and the added ones.
        """
        target = self.return_urls.check(return_to)
        scopes = self.policy.scopes
        added = added_scopes(add_scope)
        if added:
            granted = (await self.records.get_user(user_id)).get("scopes", "") if user_id else ""
            scopes = tuple(dict.fromkeys((*scopes, *(s for s in granted.split(",") if s), *added)))
        binding = binding_value if _valid_binding(binding_value) else secrets.token_urlsafe(BINDING_BYTES)
        assert binding is not None
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-], inside PKCE's 43-128
        attempt = LoginAttempt(code_verifier=verifier, nonce=secrets.token_urlsafe(16), return_to=target,
                               binding_hash=_hash(binding), created_at=self.clock.now(), scopes=scopes)
        await self.records.put_login_attempt(_hash(state), attempt, self.policy.attempt_ttl)
        url = self.provider.authorize_url(state=state, code_verifier=verifier,
                                          redirect_uri=self.policy.redirect_uri, scopes=scopes,
                                          force_consent=force_consent)
        return LoginStart(url, binding)

    async def finish(self, *, params: Mapping[str, str], binding_value: str | None, user_agent: str = "",
                     ip: str = "") -> LoginResult:
        """Take the attempt (once), check the browser binding, then exchange, fetch the profile and save."""
        try:
            result = await self._finish(params, binding_value, user_agent, ip)
        except BrokerError as error:
            self.metrics.logins.labels(login_outcome(error)).inc()
            raise
        except SignInAbandoned as abandoned:
            self.metrics.logins.labels(login_outcome(abandoned.cause)).inc()
            raise
        self.metrics.logins.labels("success").inc()
        return result

    async def _finish(self, params: Mapping[str, str], binding_value: str | None, user_agent: str,
                      ip: str) -> LoginResult:
        state = params.get("state", "")
        if not state or len(state) > 256:
            raise LoginFailed(log_detail="callback without state")
        attempt = await self.records.take_login_attempt(_hash(state))
        if attempt is None:
            raise LoginFailed(log_detail="unknown, expired or replayed state")
        if binding_value is None or not hmac.compare_digest(_hash(binding_value), attempt.binding_hash):
            raise LoginFailed(log_detail="browser-binding cookie missing or foreign")
        takes_failures = self.policy.failures_return_to and attempt.return_to.startswith(
            self.policy.failures_return_to)
        if not takes_failures:
            return await self._complete(params, attempt, user_agent, ip)
        try:
            return await self._complete(params, attempt, user_agent, ip)
        except BrokerError as error:
            log.info("sign-in for %s failed (%s): back to it", attempt.return_to.partition("?")[0], error.code)
            raise SignInAbandoned(f"{attempt.return_to}&{urlencode({'error': error.code})}", error) from error

    async def _complete(self, params: Mapping[str, str], attempt: LoginAttempt, user_agent: str,
                        ip: str) -> LoginResult:
        error = params.get("error")
        if error:
            if error == "access_denied":
                raise AccessDenied("You cancelled signing in with TikTok. You can try again at any time.")
            raise LoginFailed("TikTok could not sign you in. Please try again.",
                              log_detail=f"authorize error {error!r}")
        code = params.get("code", "")
        if not code or len(code) > 1024:
            raise LoginFailed(log_detail="callback without code")
        tokens = await self.provider.exchange_code(code=code, redirect_uri=self.policy.redirect_uri,
                                                   code_verifier=attempt.code_verifier)
        created = await self.link(tokens, user_agent=user_agent, ip=ip)
        return LoginResult(created.session, created.cookie_value, attempt.return_to)

    async def link(self, tokens: ProviderTokens, *, user_agent: str = "", ip: str = "",
                   app: AppSignIn | None = None) -> NewSession:
        """After TikTok handed out `tokens`: read the profile, then find the user by open_id (or make one), seal
        the TikTok tokens in the vault and open a session, all in one write. /callback and the TikTok SDK
        exchange (`app`: a session of kind app) both link users here."""
        identity = await self.provider.fetch_identity(tokens)
        if identity.subject != tokens.subject:
            raise UpstreamError(log_detail="user info open_id differs from the token's open_id")
        # Everything that can fail upstream has happened; only now is anything written.
        user_id = await self.records.claim_user_id(identity.subject, new_user_id())
        created = self.sessions.new_session(user_id, identity, tokens, user_agent=user_agent, ip=ip, app=app)
        try:
            await self.records.save_login(user_id, identity, tokens, created.session, self.clock.now())
        except AccountDeleted:
            # The account was deleted while this login was in flight: it signs in as a new account, as a login
            # after the deletion would have.
            log.info("login raced its account's deletion: a new account", extra={"user_id": user_id})
            user_id = await self.records.replace_user_id(identity.subject, user_id, new_user_id())
            created = self.sessions.new_session(user_id, identity, tokens, user_agent=user_agent, ip=ip, app=app)
            await self.records.save_login(user_id, identity, tokens, created.session, self.clock.now())
        log.info("login complete", extra={"user_id": user_id, "sid": created.session.sid,
                                          "kind": created.session.kind})
        return created
