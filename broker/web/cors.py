"""CORS for browser apps: discovery and the JWKS for everyone; the token, revocation, introspection and userinfo
endpoints for the origins registered in a client's `allowed_cors_origins`, and (with credentials, for the
session-cookie grant) for the broker's own trusted origins."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from broker.web.services import Services, services

PUBLIC = {"Access-Control-Allow-Origin": "*"}
METHODS = {"/oauth/token": "POST", "/oauth/revoke": "POST", "/oauth/introspect": "POST", "/oauth/par": "POST",
           "/userinfo": "GET, POST"}
ALLOWED_HEADERS = "Authorization, Content-Type, DPoP"
# What a page may read of an answer besides the simple headers: the DPoP nonce and challenge (RFC 9449).
EXPOSED_HEADERS = "DPoP-Nonce, WWW-Authenticate"
PREFLIGHT_MAX_AGE = "600"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def trusted_origins(svc: Services) -> frozenset[str]:
    """The broker's own pages and the allowlisted return URLs: first-party pages that may send the cookie."""
    return frozenset({_origin(svc.settings.issuer), *(_origin(url) for url in svc.settings.allowed_return_urls)})


def cors_headers(request: Request, client_id: str = "") -> dict[str, str]:
    """Headers that let the calling page read this answer; none for an origin nobody registered. With a
    client known, only that client's origins count."""
    origin = request.headers.get("origin")
    if not origin or request.url.path not in METHODS:
        return {}
    svc = services(request)
    lowered = origin.lower()
    if lowered in trusted_origins(svc):
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin",
                "Access-Control-Expose-Headers": EXPOSED_HEADERS}
    client = svc.clients.get(client_id) if client_id else None
    registered = client.allowed_cors_origins if client else svc.clients.cors_origins()
    if lowered in registered:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": EXPOSED_HEADERS}
    return {}


def with_cors(request: Request, response: Response, client_id: str = "") -> Response:
    response.headers.update(cors_headers(request, client_id))
    return response


async def preflight(request: Request) -> Response:
    """OPTIONS: what a browser asks before a cross-origin POST with credentials or an Authorization header."""
    headers = cors_headers(request)
    if headers:
        headers.update({"Access-Control-Allow-Methods": METHODS[request.url.path],
                        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE})
    return Response(status_code=204, headers=headers)
