"""The composition root: builds every part from Settings and hands them to the web layer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, cast

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.templating import Jinja2Templates

from broker.clients import load_clients
from broker.clock import Clock, SystemClock
from broker.config import Settings
from broker.errors import ConfigError
from broker.flows.account import AccountFlow, AccountPowers
from broker.flows.consent import ConsentFlow
from broker.flows.csrf import FormTokens, derive_key
from broker.flows.device import DeviceFlow
from broker.flows.discovery import Discovery
from broker.flows.dpop import DPoPGuard, DPoPNonces
from broker.flows.events import Events
from broker.flows.login import LoginFlow, LoginPolicy
from broker.flows.logout import RpLogout
from broker.flows.oidc import RESUME_PATH, OidcFlow
from broker.flows.oidc_tokens import OidcTokens
from broker.flows.post_events import PostEvents
from broker.flows.request_limits import LimitPolicy, RequestLimits
from broker.flows.return_urls import ReturnUrlPolicy
from broker.flows.revocations import TikTokRevoker
from broker.flows.scopes import ScopePolicy
from broker.flows.sdk_exchange import SdkExchange
from broker.flows.sessions import CachedSession, SessionPolicy, SessionService
from broker.flows.tiktok_api import ProxyPolicy, TikTokApi
from broker.flows.tiktok_posting import Posting
from broker.flows.tiktok_webhook import TikTokWebhooks
from broker.flows.tokens import TokenFlow, TokenPolicy
from broker.flows.upstream import UpstreamTokens
from broker.metrics import Metrics
from broker.providers.base import Provider
from broker.providers.registry import create_provider
from broker.signing.id_tokens import IdTokenSigner
from broker.signing.keyring import KeyRing
from broker.signing.logout_tokens import LogoutTokenSigner
from broker.signing.rotation import KeyRotator
from broker.signing.tokens import TokenService
from broker.store.accounts import Accounts
from broker.store.codes import AuthorizationStore
from broker.store.consents import Consents
from broker.store.device_codes import DeviceCodes
from broker.store.dpop_replay import DPoPReplayCache
from broker.store.events import EventStore
from broker.store.families import Families, FamilyCaps
from broker.store.keys import KeySpace
from broker.store.local_cache import TrackedCache
from broker.store.once import OnceMarkers
from broker.store.publishes import PublishStore
from broker.store.ratelimit import RateLimiter, SharedLimiter
from broker.store.records import Records
from broker.store.redis import RedisClient, create_redis, follow_failovers
from broker.store.revocations import RevocationQueue
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.tracking import InvalidationListener, tracked_prefixes, tracking_connector
from broker.store.vault import Vault
from broker.tasks import stop_tasks
from broker.web.errors import EXCEPTION_HANDLERS
from broker.web.gateway_fast import GatewayFastPath
from broker.web.request_id import RequestIdMiddleware
from broker.web.request_metrics import RequestMetricsMiddleware
from broker.web.router import IndexedRouter
from broker.web.routes import ROUTES
from broker.web.services import Services
from broker_sdk.http import cookieless_client

TEMPLATES_DIR = Path(__file__).parent / "web" / "templates"


def outbound_client() -> httpx.AsyncClient:
    """The one client for TikTok, the proxy and webhook deliveries. Its calls act for many users at once, so it
    keeps no cookies: one that TikTok sets on a call for one user must never travel on a call for another."""
    return cookieless_client(timeout=httpx.Timeout(5.0))  # TikTok calls set their own deadlines


def create_app(settings: Settings, *, http_client: httpx.AsyncClient | None = None,
               redis: RedisClient | None = None, clock: Clock | None = None,
               provider: Provider | None = None) -> Starlette:
    """Build the broker. Nothing connects yet: Redis and TikTok are reached on first use."""
    clock = clock or SystemClock()
    if redis is None and not settings.redis_url:
        raise ConfigError(["BROKER_REDIS_URL: not set (the command line starts an embedded Redis for you)"])
    if not settings.vault_keys:
        raise ConfigError(["BROKER_VAULT_KEYS: required to store TikTok tokens encrypted"])
    owned_redis = redis is None
    redis_client = redis if redis is not None else create_redis(settings.redis_url.reveal())
    owned_http = http_client is None
    http = http_client if http_client is not None else outbound_client()

    metrics = Metrics()  # one per app: every part that counts something gets this instance
    keyspace, vault = KeySpace(settings.redis_prefix), Vault(settings.vault_keys)
    records = Records(redis_client, keyspace, vault)
    clients = load_clients(settings.clients_file, gateway_audience=settings.token_audience)
    rotator = None
    if settings.key_rotation_period > 0:
        rotator = KeyRotator(settings.keys_dir, period=settings.key_rotation_period, alg=settings.signing_alg,
                             clock=clock, jwks_max_age=settings.jwks_max_age,
                             max_token_lifetime=settings.max_token_lifetime, also=settings.key_algorithms)
        rotator.run_once()  # a fresh deployment signs from its first request
    keyring = KeyRing(settings.keys_dir, clock=clock, max_token_lifetime=settings.max_token_lifetime,
                      jwks_max_age=settings.jwks_max_age, alg=settings.signing_alg)
    tokens = TokenService(keyring, issuer=settings.issuer, audience=settings.token_audience,
                          ttl=settings.access_token_ttl, leeway=settings.jwt_leeway, clock=clock,
                          verified_cache_size=settings.local_cache_size)
    upstream = provider or create_provider(
        "tiktok", http_client=http, client_key=settings.tiktok_client_key,
        client_secret=settings.tiktok_client_secret.reveal(), authorize_url=settings.tiktok_authorize_url,
        api_url=settings.tiktok_api_url, clock=clock, timeout_seconds=settings.tiktok_timeout, metrics=metrics)
    audiences = (settings.token_audience, *clients.audiences())
    # Each process keeps live sessions and clean access tokens in memory while a tracking connection reports
    # every write to them (a client passed in by a caller has no URL to open one with: no cache then).
    connector = tracking_connector(settings.redis_url.reveal()) if owned_redis else None
    listener = (InvalidationListener(connector, tracked_prefixes(keyspace), trust=settings.local_cache_trust_ms / 1000)
                if connector is not None and settings.local_cache_size > 0 else None)
    session_cache: TrackedCache[CachedSession] | None = None
    access_cache: TrackedCache[bool] | None = None
    if listener is not None:
        session_cache = TrackedCache(listener, settings.local_cache_size)
        access_cache = TrackedCache(listener, settings.local_cache_size)
        listener.subscribe(session_cache)
        listener.subscribe(access_cache)
    sessions = SessionService(records, tokens, SessionPolicy(settings.session_ttl, settings.session_idle_ttl,
                                                             settings.access_token_ttl, settings.jwt_leeway,
                                                             audiences), clock, cache=session_cache)
    events = Events(EventStore(redis_client, keyspace), tokens, http, clock, urls=settings.webhook_urls,
                    issuer=settings.issuer, metrics=metrics,
                    logout_tokens=LogoutTokenSigner(keyring, issuer=settings.issuer))
    caps = FamilyCaps(settings.max_families_per_session, settings.max_families_per_user)
    token_flow = TokenFlow(families=Families(redis_client, keyspace, vault, caps), sessions=sessions,
                           policy=TokenPolicy(settings.refresh_grace, settings.session_idle_ttl,
                                              gateway_audience=settings.token_audience), clock=clock,
                           events=events, access_cache=access_cache, metrics=metrics, clients=clients)
    login = LoginFlow(records=records, provider=upstream, sessions=sessions,
                      return_urls=ReturnUrlPolicy(settings.issuer, settings.allowed_return_urls),
                      policy=LoginPolicy(settings.redirect_uri, settings.tiktok_scopes, settings.login_ttl,
                                         failures_return_to=(f"{settings.issuer}{RESUME_PATH}?",)),
                      clock=clock, metrics=metrics)
    scopes = ScopePolicy(settings.tiktok_scopes)
    discovery = Discovery(issuer=settings.issuer, keyring=keyring, records=records, scopes=scopes.supported(),
                          algorithms=settings.key_algorithms)
    tiktok_tokens = TikTokTokenStore(redis_client, keyspace, vault)
    fresh_tokens = UpstreamTokens(tiktok_tokens, upstream, clock, margin=settings.tiktok_refresh_margin,
                                  call_timeout=settings.tiktok_timeout, metrics=metrics)
    revoker = TikTokRevoker(RevocationQueue(redis_client, keyspace, vault), upstream, clock, metrics)
    consent = ConsentFlow(store=Consents(redis_client, keyspace), clients=clients, clock=clock)
    accounts = Accounts(redis_client, keyspace)
    account = AccountFlow(accounts=accounts, records=records, families=token_flow.families,
                          tiktok=tiktok_tokens, revoker=revoker, sessions=sessions, events=events, metrics=metrics,
                          clock=clock, deny_for=settings.max_token_lifetime, consent=consent,
                          powers=AccountPowers(clients, settings.token_audience))
    posting = Posting(PublishStore(redis_client, keyspace), clock, ttl=settings.tiktok_publish_ttl, metrics=metrics)
    once = OnceMarkers(redis_client, keyspace)
    webhooks = TikTokWebhooks(client_key=settings.tiktok_client_key,
                              client_secret=settings.tiktok_client_secret.reveal(),
                              once=once, account=account,
                              posts=PostEvents(accounts=accounts, posting=posting, events=events), metrics=metrics,
                              clock=clock)
    authorizations = AuthorizationStore(redis_client, keyspace)
    oidc = OidcFlow(clients=clients, store=authorizations, login=login, consent=consent, scopes=scopes, clock=clock,
                    issuer=settings.issuer)
    id_tokens = IdTokenSigner(keyring, issuer=settings.issuer, clock=clock)
    oidc_tokens = OidcTokens(store=authorizations, tokens=token_flow, access_tokens=tokens, id_tokens=id_tokens,
                             records=records, scopes=scopes, clock=clock)
    sdk_exchange = SdkExchange(login=login, provider=upstream, oidc_tokens=oidc_tokens, scopes=scopes, once=once)
    device = DeviceFlow(store=DeviceCodes(redis_client, keyspace), clients=clients, scopes=scopes, consent=consent,
                        records=records, sessions=sessions, oidc_tokens=oidc_tokens, clock=clock,
                        issuer=settings.issuer)
    rp_logout = RpLogout(clients=clients, id_tokens=id_tokens, tokens=token_flow, account=account,
                         return_urls=login.return_urls)
    tiktok_api = TikTokApi(http=http, upstream=fresh_tokens,
                           limiter=RateLimiter(redis_client, keyspace), clock=clock,
                           policy=ProxyPolicy(api_url=settings.tiktok_api_url, paths=settings.tiktok_proxy_paths,
                                              user_rate=settings.tiktok_proxy_user_rate,
                                              client_rate=settings.tiktok_proxy_client_rate,
                                              timeout=settings.tiktok_timeout),
                           posting=posting, metrics=metrics)
    limits = RequestLimits(SharedLimiter(redis_client, keyspace), clients, LimitPolicy.from_settings(settings), clock,
                           metrics=metrics)
    form_tokens = FormTokens(derive_key(settings.vault_keys[0].key, b"tiktok-broker form tokens"))
    dpop = DPoPGuard(replay=DPoPReplayCache(redis_client, keyspace), issuer=settings.issuer,
                     nonces=DPoPNonces(derive_key(settings.vault_keys[0].key, b"tiktok-broker dpop nonces"), clock),
                     require_nonce=settings.dpop_require_nonce)
    services = Services(settings=settings, login=login, sessions=sessions, tokens=token_flow, clients=clients,
                        account=account, webhooks=webhooks, form_tokens=form_tokens, metrics=metrics,
                        upstream=fresh_tokens, events=events, revoker=revoker, oidc=oidc, oidc_tokens=oidc_tokens,
                        consent=consent, logout=rp_logout, discovery=discovery,
                        templates=Jinja2Templates(directory=str(TEMPLATES_DIR)), tiktok_api=tiktok_api,
                        limits=limits, sdk_exchange=sdk_exchange, device=device, dpop=dpop)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Work that runs beside the requests. Every loop is safe to run on every replica at once: each claims
        # its items in Redis (or, for keys, through an exclusive file) before acting.
        jobs: list[Coroutine[Any, Any, None]] = [revoker.run(), events.run_delivery(), follow_failovers(redis_client)]
        if rotator is not None:
            jobs.append(rotator.run_forever())
        if listener is not None:
            jobs.append(listener.run())
        if settings.tiktok_refresh_ahead:
            jobs.append(fresh_tokens.run_refresh_ahead(interval=60, horizon=2 * settings.tiktok_refresh_margin))
        background = [asyncio.create_task(job) for job in jobs]
        try:
            yield
        finally:
            await stop_tasks(background)
            await fresh_tokens.drain(grace=settings.tiktok_timeout)
            if owned_http:
                await http.aclose()
            if owned_redis:
                await cast(Any, redis_client).aclose()

    # Outermost first: the gateway's lean path answers allowed checks itself (with their request id and metric);
    # for everything else the request metrics time everything, the request id included.
    app = Starlette(exception_handlers=cast(Any, EXCEPTION_HANDLERS),
                    middleware=[Middleware(GatewayFastPath), Middleware(RequestMetricsMiddleware, metrics=metrics),
                                Middleware(RequestIdMiddleware)])
    # No slash redirects: /login/ is a 404 like any unknown path, not a redirect built from the Host header (which
    # the client writes) and the raw query.
    app.router = IndexedRouter(ROUTES, lifespan=lifespan, redirect_slashes=False)
    app.state.services = services
    return app
