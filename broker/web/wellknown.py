"""Published documents: the JWKS (precomputed, cacheable, ETag), the OpenID discovery document and the same
metadata as RFC 8414 asks for it. Anyone may read them, from any origin."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from broker.web.cors import PUBLIC
from broker.web.services import services


async def jwks(request: Request) -> Response:
    document = services(request).discovery.jwks()
    headers = {"Cache-Control": document.cache_control, "ETag": document.etag, **PUBLIC}
    if document.not_modified(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(document.body, media_type="application/json", headers=headers)


async def openid_configuration(request: Request) -> Response:
    body = services(request).discovery.configuration()
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=300", **PUBLIC})
