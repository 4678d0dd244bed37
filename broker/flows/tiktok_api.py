"""The TikTok API proxy: who may call it, which paths and scopes, our rate limits, and the forwarded call.

Content Posting calls (flows/posting_rules.py, flows/tiktok_posting.py) have their bodies checked first, TikTok's
own per-user limits applied here, and each publish_id TikTok answers recorded with the user and the client.

A caller is a broker access JWT, or a confidential client acting for a user it names (background jobs).
The user's TikTok access token is attached here and never leaves towards the caller: only allowlisted response
headers go back. TikTok answering `access_token_invalid` costs one refresh and one retry, then the user must
sign in again.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from broker.clients import Client
from broker.clock import Clock
from broker.config import proxy_paths
from broker.domain import ProviderTokens
from broker.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidRequest,
    LoginRequired,
    NotFound,
    RateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)
from broker.flows.posting_rules import TIKTOK_LIMITS, PostingCall
from broker.flows.tiktok_posting import Posting
from broker.flows.upstream import UpstreamTokens
from broker.metrics import Metrics
from broker.providers.tiktok_parse import FIELDS_BY_SCOPE
from broker.store.ratelimit import Bucket, RateLimiter, Window

log = logging.getLogger("broker.tiktok_api")

USER_INFO = "/v2/user/info/"
VIDEO_PATHS = ("/v2/video/list/", "/v2/video/query/")
SCOPE_VIDEO_LIST = "video.list"
SERVICE_SCOPE = "tiktok.proxy"  # a confidential client needs it in its clients-file scopes to name a subject
BROWSER = "browser"  # the rate-limit name of tokens that no registered client holds (cookie sessions)
FIELD_SCOPE = {name: scope for scope, names in FIELDS_BY_SCOPE.items() for name in names}
USER_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
MAX_BODY = 1 << 20
DEFAULT_RETRY_AFTER = 60  # TikTok's window is one minute
# The route template under which the proxy's rate limits are counted.
PROXY_ROUTE = "/tiktok/{path:path}"
# Request headers a caller may pass on to TikTok; everything else (hop-by-hop, cookies, Authorization,
# forwarding headers, our own X-Broker-*) stays here.
FORWARD_REQUEST = ("accept", "accept-encoding", "accept-language", "content-type", "user-agent")
# Response headers the caller gets back from TikTok.
FORWARD_RESPONSE = ("content-type", "content-encoding", "retry-after", "x-tt-logid", "x-ratelimit-limit",
                    "x-ratelimit-remaining", "x-ratelimit-reset")


@dataclass(frozen=True)
class ProxyPolicy:
    api_url: str
    paths: tuple[str, ...]
    user_rate: int  # per minute, per user and path (all callers together)
    client_rate: int  # per minute, per user, path and calling client
    timeout: float


@dataclass(frozen=True)
class Caller:
    user_id: str
    client_id: str  # BROWSER for tokens of cookie sessions
    # The scopes of the caller's own token: a call needs each TikTok scope in it, not only in the user's grant.
    # None for a service acting for a user (no token; the operator granted it tiktok.proxy).
    token_scopes: frozenset[str] | None = None


@dataclass(frozen=True)
class Proxied:
    """TikTok's answer: status, safe headers and the body (streamed; `close` must run when it is done)."""

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    response: httpx.Response

    async def close(self) -> None:
        await self.response.aclose()


def required_scopes(path: str, query: Mapping[str, str]) -> list[str]:
    """The TikTok scopes a call needs, from TikTok's scope table (unknown fields need none: TikTok ignores them)."""
    if path == USER_INFO:
        names = [n.strip() for n in query.get("fields", "").split(",") if n.strip()]
        return sorted({FIELD_SCOPE[n] for n in names if n in FIELD_SCOPE})
    if path in VIDEO_PATHS:
        return [SCOPE_VIDEO_LIST]
    return []


def status_error_kind(status: int) -> str | None:
    """The `kind` label of a proxied TikTok answer: None for success, "unavailable" when TikTok is down or
    throttling, "rejected" for its other refusals (expired token, bad parameters)."""
    if status < 400:
        return None
    return "unavailable" if status >= 500 or status == 429 else "rejected"


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    finally:
        await response.aclose()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class TikTokApi:
    def __init__(self, *, http: httpx.AsyncClient, upstream: UpstreamTokens,
                 limiter: RateLimiter, clock: Clock, policy: ProxyPolicy, posting: Posting,
                 metrics: Metrics | None = None) -> None:
        self.http = http
        self.posting = posting
        self.upstream = upstream
        self.limiter = limiter
        self.clock = clock
        self.policy = policy
        # Each forwarded path with the TikTok scopes BROKER_TIKTOK_PROXY_PATHS declares for it (None: the broker's
        # own tables decide, for the paths it knows).
        self._declared = proxy_paths(policy.paths)
        self.metrics = metrics or Metrics()

    # -- who is calling --

    @staticmethod
    def caller_for_claims(claims: dict[str, object]) -> Caller:
        """The caller a checked access token stands for."""
        return Caller(str(claims["sub"]), str(claims.get("client_id") or BROWSER),
                      frozenset(str(claims.get("scope", "")).split()))

    def caller_for_service(self, client: Client, subject: str | None) -> Caller:
        """An authenticated client acting for `subject`; the grant itself is checked when it is used."""
        if not client.confidential:
            raise InvalidClient("Only confidential clients may call the TikTok API for a user.")
        if SERVICE_SCOPE not in client.scopes:
            raise InsufficientScope(f"This client may not call the TikTok API for users (it needs the scope "
                                    f"{SERVICE_SCOPE} in the clients file).")
        if not subject or not USER_ID.fullmatch(subject):
            raise InvalidRequest("X-Broker-Subject must name the user (the broker's `sub`).")
        return Caller(subject, client.client_id)

    # -- the call --

    def allowed_path(self, path: str) -> str:
        if path not in self._declared:
            raise NotFound("This TikTok API path is not available through the broker.")
        return path

    def required_scopes(self, path: str, query: Mapping[str, str]) -> list[str]:
        """What TikTok's tables say the call needs, and what the operator declared for the path."""
        return sorted({*required_scopes(path, query), *(self._declared.get(path) or ())})

    async def forward(self, caller: Caller, *, method: str, path: str, query: bytes, params: Mapping[str, str],
                      headers: Mapping[str, str], body: bytes) -> Proxied:
        path = self.allowed_path(path)
        if len(body) > MAX_BODY:
            raise InvalidRequest("The request body is too large.")
        posting = self.posting.check(path, body)  # a Content Posting body of the wrong shape: 400, TikTok not called
        needed = self.required_scopes(path, params)
        if posting is not None:  # a status fetch of a publish_id that is not this user's: 404
            needed += await self.posting.scopes(caller.user_id, posting)
        if caller.token_scopes is not None:  # before anything is charged or refreshed: a refusal changes nothing
            beyond = [scope for scope in needed if scope not in caller.token_scopes]
            if beyond:
                raise InsufficientScope(f"This token does not carry the TikTok scope {', '.join(beyond)}, which this "
                                        "request needs.", log_detail=f"client {caller.client_id}")
        await self._charge(caller, path)
        grant = await self._grant(caller.user_id)
        missing = [scope for scope in needed if scope not in grant.scopes]
        if missing:
            raise InsufficientScope(f"The user did not grant the TikTok scope {', '.join(missing)}, which this "
                                    "request needs; the user must log in again and grant it.")
        outgoing = {name: headers[name] for name in FORWARD_REQUEST if name in headers}
        response = await self._send(method, path, query, outgoing, body, grant)
        if response.status_code == 401 and await self._token_invalid(response):
            log.info("TikTok refused the access token of user %s on %s: refreshing once", caller.user_id, path)
            grant = await self._grant(caller.user_id, reject=grant.access_token)
            response = await self._send(method, path, query, outgoing, body, grant)
            if response.status_code == 401 and await self._token_invalid(response):
                raise LoginRequired(log_detail=f"TikTok refused user {caller.user_id}'s refreshed token "
                                               f"(log_id {response.headers.get('x-tt-logid', '')})")
        if response.status_code >= 500:  # TikTok's own failure: "retry later", as for every other TikTok call
            await response.aclose()
            raise UpstreamUnavailable(log_detail=f"tiktok {method} {path}: HTTP {response.status_code} "
                                                 f"(log_id {response.headers.get('x-tt-logid', '')})")
        if posting is not None and posting.kind and response.status_code == 200:
            await self._remember_publish(response, caller, posting)
        return self._answer(response, caller, method, path)

    async def _remember_publish(self, response: httpx.Response, caller: Caller, posting: PostingCall) -> None:
        """Read TikTok's (small) init answer to record its publish_id; the answer goes back byte for byte."""
        try:
            await response.aread()
        except httpx.HTTPError as exc:
            await response.aclose()
            raise UpstreamUnavailable(log_detail=f"tiktok {posting.path}: answer cut short ({type(exc).__name__})") \
                from None
        await self.posting.remember(caller.user_id, caller.client_id, posting, response.content)

    async def _charge(self, caller: Caller, path: str) -> None:
        buckets = (Bucket(f"user:{path}", self.policy.user_rate),
                   Bucket(f"client:{caller.client_id}:{path}", self.policy.client_rate))
        # Where TikTok counts a user's requests in a sliding minute (Content Posting), the same exact window here
        # refuses what TikTok would refuse, before it costs a call.
        tiktok_limit = TIKTOK_LIMITS.get(path)
        window = Window(f"tiktok:{path}", tiktok_limit) if tiktok_limit else None
        wait = await self.limiter.take(caller.user_id, buckets, self.clock.now(), window=window)
        if wait > 0:
            self.metrics.count_rate_limited(PROXY_ROUTE, "user")  # both buckets are keyed by the user
            raise RateLimited(retry_after=max(1, math.ceil(wait)),
                              log_detail=f"user {caller.user_id} client {caller.client_id} on {path}")

    async def _grant(self, user_id: str, reject: str | None = None) -> ProviderTokens:
        try:
            return await self.upstream.fresh(user_id, reject_access_token=reject)
        except UpstreamRejected as exc:
            raise LoginRequired(log_detail=exc.log_detail) from None

    async def _send(self, method: str, path: str, query: bytes, headers: dict[str, str], body: bytes,
                    grant: ProviderTokens) -> httpx.Response:
        url = httpx.URL(self.policy.api_url + path).copy_with(query=query or None)
        auth = {"Authorization": f"Bearer {grant.access_token}"}
        request = self.http.build_request(method, url, headers={**headers, **auth}, content=body or None,
                                          timeout=self.policy.timeout)
        # Allowlisted paths only (allowed_path ran first), so the endpoint label stays bounded.
        endpoint, started = f"proxy:{path}", time.perf_counter()
        try:
            response = await self.http.send(request, stream=True, follow_redirects=False, auth=None)
        except httpx.TimeoutException:
            self.metrics.observe_tiktok(endpoint, time.perf_counter() - started, "unavailable")
            raise UpstreamUnavailable(log_detail=f"tiktok {method} {path}: timed out") from None
        except httpx.HTTPError as exc:
            self.metrics.observe_tiktok(endpoint, time.perf_counter() - started, "unavailable")
            raise UpstreamUnavailable(log_detail=f"tiktok {method} {path}: {type(exc).__name__}") from None
        self.metrics.observe_tiktok(endpoint, time.perf_counter() - started, status_error_kind(response.status_code))
        return response

    @staticmethod
    async def _token_invalid(response: httpx.Response) -> bool:
        """Reads the (small) error body; the response stays readable through `.content`."""
        try:
            await response.aread()
            error = json.loads(response.content).get("error")
        except (httpx.HTTPError, ValueError, RecursionError, AttributeError):
            return False
        finally:
            await response.aclose()
        return isinstance(error, dict) and error.get("code") == "access_token_invalid"

    def _answer(self, response: httpx.Response, caller: Caller, method: str, path: str) -> Proxied:
        headers = {name: response.headers[name] for name in FORWARD_RESPONSE if name in response.headers}
        if response.status_code == 429 and "retry-after" not in headers:
            headers["retry-after"] = str(DEFAULT_RETRY_AFTER)
        log.info("tiktok %s %s for user %s by %s -> %s (log_id %s)", method, path, caller.user_id,
                 caller.client_id, response.status_code, response.headers.get("x-tt-logid", ""))
        if response.is_closed:  # already read (an error body we inspected): decoded, so no Content-Encoding
            headers.pop("content-encoding", None)
            return Proxied(response.status_code, headers, _once(response.content), response)
        return Proxied(response.status_code, headers, _chunks(response), response)
