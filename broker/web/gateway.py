"""/auth/verify: the forward-auth check for nginx auth_request, Traefik ForwardAuth and Envoy ext_authz (HTTP).

One check, two ways in, so that nothing about the original request is ever guessed:
  GET /auth/verify               nginx (original URL in X-Original-URL) and Traefik (X-Forwarded-Proto, -Host,
                                 -Uri and -Method). Options are query parameters of the configured auth URL.
  ANY /auth/verify/<path>        Envoy's HTTP ext_authz with path_prefix "/auth/verify": Envoy keeps the original
                                 method, path, query and Host, so those describe the original request and the
                                 query belongs to the app, never to us. Options come as headers Envoy adds.
Allowed: 200 (Envoy allows on 200 only; nginx and Traefik on any 2xx) with `Authorization: Bearer <JWT>`,
`X-Auth-Request-User` and `X-Auth-Request-Open-Id` for the upstream.
Denied: 401 JSON with WWW-Authenticate and a Location hint (nginx redirects to it itself). In redirect mode
(`?redirect=1`, or `X-Broker-Redirect: 1` from Envoy) a browser navigation gets a 302 to that Location instead,
because Traefik and Envoy hand the broker's answer to the browser as it is.
The original URL counts only from a trusted proxy, and becomes return_to only when it is on the allowlist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from broker.domain import IssuedToken
from broker.errors import BrokerError, InvalidDpopProof, InvalidRequest, InvalidReturnUrl, InvalidToken
from broker.web.client_addr import HOST, forwarded
from broker.web.cookies import read_session_cookie
from broker.web.dpop import check_sender, presented_token
from broker.web.render import NO_STORE, json_error
from broker.web.services import Services, services

log = logging.getLogger("broker.gateway")

ENVOY_PREFIX = "/auth/verify"
REDIRECT_PARAMETER = "redirect"
REDIRECT_HEADER = "x-broker-redirect"
NAVIGATIONS = ("GET", "HEAD")  # a POST cannot be replayed after a login: it gets the 401


@dataclass(frozen=True)
class _Check:
    original_url: str | None
    method: str
    redirect: bool


def _flag(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("", "0", "false"):
        return False
    if value.lower() in ("1", "true"):
        return True
    raise InvalidRequest(f"{name} must be 1 or 0.")


def _forward_auth_original(request: Request) -> str | None:
    view = forwarded(request)
    if view.original_url:
        return view.original_url
    if view.proto and view.host and view.uri:
        return f"{view.proto}://{view.host}{view.uri}"
    return None


def _envoy_original(request: Request) -> str | None:
    view = forwarded(request)
    host = request.headers.get("host", "")
    if not view.peer_trusted or view.proto is None or not HOST.fullmatch(host):
        return None
    raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw_path.decode("latin-1")[len(ENVOY_PREFIX):] or "/"
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{view.proto}://{host}{path}" + (f"?{query}" if query else "")


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return "unparseable"


def _login_url(svc: Services, original: str | None) -> str:
    login = f"{svc.settings.issuer}/login"
    if original is None:
        return login
    try:
        return_to = svc.login.return_urls.check(original)
    except InvalidReturnUrl as refused:
        # Not an error for the visitor: they still sign in, and land on the broker's home page. This holds for an
        # unparseable original URL too ("http://[", from a Host header the visitor wrote): a 400 here would reach
        # them as the gateway's 500, since nginx's auth_request treats anything but 2xx, 401 and 403 as an error.
        log.info("gateway: the original URL is not a return URL on BROKER_ALLOWED_RETURN_URLS (%s, origin %r)",
                 refused.log_detail, _netloc(original))
        return login
    return f"{login}?{urlencode({'return_to': return_to})}"


def _denied(svc: Services, request: Request, check: _Check, error: InvalidToken | InvalidDpopProof) -> Response:
    location = _login_url(svc, check.original_url)
    navigation = check.method in NAVIGATIONS and "text/html" in request.headers.get("accept", "").lower()
    if check.redirect and navigation:
        return Response(status_code=302, headers={**NO_STORE, "Location": location})
    return json_error(error, extra_headers={"Location": location})


def _dpop_target(check: _Check) -> tuple[str | None, str]:
    """The request a DPoP proof sent through the gateway must be for: the original URL and method."""
    return check.original_url, check.method


@dataclass(frozen=True)
class Allowed:
    """An allowed check: the broker JWT the upstream gets, and whom it names."""

    token: str
    user: str
    open_id: str


def _allowance(token: str, claims: dict[str, object]) -> Allowed:
    return Allowed(token, str(claims.get("sub", "")), str(claims.get("tiktok_open_id", "")))


async def bearer_check(svc: Services, token: str) -> Allowed | None:
    """A bearer JWT meant for the gateway, live and on no denylist; InvalidToken otherwise. None for a token bound
    to a DPoP key: only the route, which has the whole request, checks its proof."""
    # Only tokens meant for the gateway: an app's token (aud = the app) is no key to the company's services.
    claims = await svc.tokens.check_access_token(token, audience=svc.settings.token_audience)
    return None if "cnf" in claims else _allowance(token, claims)


async def cookie_check(svc: Services, cookie_value: str | None) -> Allowed | None:
    """The session behind a cookie, and its (cached) JWT; None when there is no live session. Most checks need
    no Redis round trip (the session cache)."""
    session = await svc.sessions.resolve(cookie_value)
    if session is None:
        return None
    issued: IssuedToken = svc.sessions.access_token_for(session)
    return _allowance(issued.token, issued.claims)


def _allowed(allowed: Allowed) -> Response:
    headers = {
        **NO_STORE,
        "Authorization": f"Bearer {allowed.token}",
        "X-Auth-Request-User": allowed.user,
        "X-Auth-Request-Open-Id": allowed.open_id,
    }
    return Response(status_code=200, headers=headers)


# Where the lean path (gateway_fast.py) leaves the denial or error it found, so that the check is not run twice.
FOUND = "broker.gateway_found"
NO_SESSION = "No valid session."


async def _verify(request: Request, describe: Callable[[], _Check]) -> Response:
    """200 with a fresh broker JWT for the upstream, or a denial; only a denial needs to know the original
    request (`describe`)."""
    svc = services(request)
    found = request.scope.pop(FOUND, None)
    if isinstance(found, InvalidToken):
        return _denied(svc, request, describe(), found)
    if isinstance(found, BrokerError):
        raise found  # answered by the error handlers (the store away: 503 with Retry-After)
    token = presented_token(request)  # Bearer, or DPoP (RFC 9449)
    if token is not None:
        try:
            # Only tokens meant for the gateway: an app's token (aud = the app) is no key to the company's services.
            claims = await svc.tokens.check_access_token(token, audience=svc.settings.token_audience)
            await check_sender(svc, request, token, claims, target=lambda: _dpop_target(describe()))
        except (InvalidToken, InvalidDpopProof) as error:
            return _denied(svc, request, describe(), error)
        return _allowed(_allowance(token, claims))
    allowed = await cookie_check(svc, read_session_cookie(request, svc.settings))
    if allowed is None:
        return _denied(svc, request, describe(), InvalidToken(NO_SESSION))
    return _allowed(allowed)


async def verify(request: Request) -> Response:
    """GET /auth/verify, for nginx auth_request and Traefik ForwardAuth."""
    # A bad value is refused even when the check would pass; most gateways send no query string at all.
    redirect = request.scope["query_string"] != b"" and _flag(request.query_params.get(REDIRECT_PARAMETER),
                                                               REDIRECT_PARAMETER)
    return await _verify(request, lambda: _Check(_forward_auth_original(request),
                                                 forwarded(request).method or request.method, redirect))


async def verify_envoy(request: Request) -> Response:
    """Any method on /auth/verify/<original path>, for Envoy's HTTP ext_authz (path_prefix /auth/verify)."""
    redirect = _flag(request.headers.get(REDIRECT_HEADER), "X-Broker-Redirect")
    return await _verify(request, lambda: _Check(_envoy_original(request), request.method, redirect))
