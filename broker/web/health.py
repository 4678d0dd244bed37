"""Probes and metrics: /healthz (the process runs), /readyz (Redis reachable, a key to sign with), /metrics."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.errors import InvalidToken, StoreUnavailable
from broker.metrics import ClusterSnapshot
from broker.web.credentials import bearer_token
from broker.web.request_metrics import route_label
from broker.web.services import Services, services

# The Prometheus text format that generate_latest writes.
METRICS_MEDIA_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    readiness = await svc.discovery.readiness()
    if readiness.checks.get("redis") != "ok":
        svc.metrics.redis_unavailable(route_label(request.scope))
    status = 200 if readiness.ready else 503
    headers = {"Cache-Control": "no-store"}
    if not readiness.ready:
        headers["Retry-After"] = "5"
    return JSONResponse({"status": "ready" if readiness.ready else "unavailable", "checks": readiness.checks},
                        status_code=status, headers=headers)


async def _cluster_snapshot(svc: Services) -> ClusterSnapshot:
    deliveries = await svc.events.stats()
    return ClusterSnapshot(webhook_backlog=deliveries.pending, webhooks_delivered=deliveries.delivered,
                           webhooks_given_up=deliveries.given_up, events_emitted=deliveries.emitted,
                           tiktok_revoke_backlog=await svc.revoker.backlog())


async def metrics(request: Request) -> Response:
    """This replica's metrics, plus the cluster-wide backlogs read from Redis now (left out if Redis is away:
    the Redis error counter and /readyz say so). With BROKER_METRICS_TOKEN set, only for that bearer token."""
    svc = services(request)
    expected = svc.settings.metrics_token.reveal()
    if expected and not hmac.compare_digest((bearer_token(request) or "").encode(), expected.encode()):
        raise InvalidToken("The metrics token is missing or wrong.")
    try:
        svc.metrics.update_cluster(await _cluster_snapshot(svc))
    except StoreUnavailable:
        svc.metrics.update_cluster(None)
        svc.metrics.redis_unavailable(route_label(request.scope))
    return Response(svc.metrics.render(), media_type=METRICS_MEDIA_TYPE, headers={"Cache-Control": "no-store"})
