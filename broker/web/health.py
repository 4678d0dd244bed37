"""Probes: /healthz says the process runs; /readyz says it can serve (Redis reachable, a key to sign with)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.web.services import services


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    readiness = await services(request).discovery.readiness()
    status = 200 if readiness.ready else 503
    headers = {"Cache-Control": "no-store"}
    if not readiness.ready:
        headers["Retry-After"] = "5"
    return JSONResponse({"status": "ready" if readiness.ready else "unavailable", "checks": readiness.checks},
                        status_code=status, headers=headers)
