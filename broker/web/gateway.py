"""/auth/verify: the forward-auth check for nginx auth_request, Traefik ForwardAuth and Envoy ext_authz."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from broker.domain import IssuedToken
from broker.errors import InvalidToken
from broker.web.cookies import read_session_cookie
from broker.web.render import NO_STORE, json_error
from broker.web.services import Services, services


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _login_hint(svc: Services, request: Request) -> str:
    # nginx passes the original URL in X-Original-URL; /login re-checks it against the allowlist anyway.
    original = request.headers.get("x-original-url")
    query = f"?{urlencode({'return_to': original})}" if original else ""
    return f"{svc.settings.issuer}/login{query}"


def _allowed(token: str, claims: dict[str, object]) -> Response:
    headers = {
        **NO_STORE,
        "Authorization": f"Bearer {token}",
        "X-Auth-Request-User": str(claims.get("sub", "")),
        "X-Auth-Request-Open-Id": str(claims.get("tiktok_open_id", "")),
    }
    return Response(status_code=200, headers=headers)


async def verify(request: Request) -> Response:
    """200 with a fresh broker JWT for the upstream, or 401. A cookie costs one Redis round trip."""
    svc = services(request)
    bearer = _bearer(request)
    if bearer is not None:
        try:
            claims = await svc.tokens.check_access_token(bearer)
        except InvalidToken as error:
            return json_error(error, extra_headers={"Location": _login_hint(svc, request)})
        return _allowed(bearer, claims)
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    if session is None:
        return json_error(InvalidToken("No valid session."), extra_headers={"Location": _login_hint(svc, request)})
    issued: IssuedToken = svc.sessions.access_token_for(session)
    return _allowed(issued.token, issued.claims)
