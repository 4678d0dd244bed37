"""Published documents: the JWKS (precomputed, cacheable, ETag) and the OpenID discovery document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from broker.signing.jwks import cache_control
from broker.web.services import services


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


async def jwks(request: Request) -> Response:
    document = services(request).discovery.jwks()
    headers = {"Cache-Control": cache_control(document.max_age), "ETag": document.etag}
    if _etag_matches(request.headers.get("if-none-match"), document.etag):
        return Response(status_code=304, headers=headers)
    return Response(document.body, media_type="application/json", headers=headers)


async def openid_configuration(request: Request) -> Response:
    body = services(request).discovery.configuration()
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=300"})
