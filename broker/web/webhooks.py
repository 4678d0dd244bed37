"""POST /webhooks/tiktok: TikTok's signed event deliveries. Answers fast: the work is a few Redis steps."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.web.bodies import read_body
from broker.web.client_addr import client_ip
from broker.web.render import NO_STORE
from broker.web.services import services

MAX_BODY = 64 * 1024  # TikTok's events are a few hundred bytes


async def tiktok(request: Request) -> Response:
    svc = services(request)
    await svc.limits.check("webhook", ip=client_ip(request))
    body = await read_body(request, MAX_BODY)
    outcome = await svc.webhooks.receive(request.headers.get("tiktok-signature"), body)
    return JSONResponse({"status": outcome}, headers=NO_STORE)

