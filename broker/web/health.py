"""Probes and metrics: /healthz (the process runs), /readyz (Redis reachable, a key to sign with), /metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.errors import BrokerError
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


async def metrics(request: Request) -> Response:
    svc = services(request)
    try:
        stats = await svc.events.stats()
        for state in ("pending", "emitted", "delivered", "given_up"):
            svc.metrics.events.labels(state).set(getattr(stats, state))
        svc.metrics.tiktok_revoke_backlog.set(await svc.revoker.queue.backlog())
    except BrokerError:
        pass  # Redis away: the other metrics still say so (and /readyz does)
    return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8",
                    headers={"Cache-Control": "no-store"})
