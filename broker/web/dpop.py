"""Access tokens as resource endpoints receive them (RFC 6750 `Bearer`, RFC 9449 `DPoP`), and the DPoP check for
/userinfo, /tiktok/... and /auth/verify. A bearer token costs one dictionary lookup here (it must not be bound)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from broker.errors import InvalidToken
from broker.web.services import Services

SCHEMES = ("bearer", "dpop")


def presented_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>` or `Authorization: DPoP <token>`; None for anything else."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() in SCHEMES else None


async def check_sender(svc: Services, request: Request, token: str, claims: dict[str, object], *,
                       target: Callable[[], tuple[str | None, str]] | None = None) -> None:
    """A bound token only with the DPoP scheme and a proof for this request: by default for the broker's own URL
    of this path (`<issuer><path>`); `target` gives (URL, method) of the request a gateway asks about, and is
    called only for a DPoP request."""
    scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
    if scheme == "bearer" and "cnf" not in claims:
        return  # the common case: a bearer token, as before
    url, method = target() if target else (svc.settings.issuer + str(request.scope.get("path", "")), request.method)
    if url is None:
        raise InvalidToken("A DPoP proof can be checked only against the original URL, which the gateway did not "
                           "send from a trusted proxy.", log_detail="DPoP at /auth/verify without the original URL")
    await svc.dpop.resource_request(scheme, token, claims, request.headers.getlist("dpop"), method=method, url=url)


async def checked_claims(svc: Services, request: Request) -> tuple[str, dict[str, object]]:
    """(token, claims) of a valid access token presented here, proof of possession checked for a bound one."""
    token = presented_token(request)
    if token is None:
        raise InvalidToken("An access token is required (Authorization: Bearer, or DPoP with a proof).")
    claims = await svc.tokens.check_access_token(token)
    await check_sender(svc, request, token, claims)
    return token, claims
