"""The request-metrics middleware on a small Starlette app: labels, failures, streaming, non-HTTP scopes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from broker.metrics import ClusterSnapshot, Metrics
from broker.web.request_metrics import RequestMetricsMiddleware
from tests.support.metrics import parse

REQUESTS = "broker_http_request_duration_seconds"


async def item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["item_id"])


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"chunk {n}\n".encode()

    return StreamingResponse(chunks(), status_code=206)


def small_app(metrics: Metrics) -> Starlette:
    return Starlette(routes=[Route("/items/{item_id}", item), Route("/broken", broken), Route("/stream", stream)],
                     middleware=[Middleware(RequestMetricsMiddleware, metrics=metrics)])


async def test_series_are_per_template_method_and_status() -> None:
    metrics = Metrics()
    app = small_app(metrics)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test") as http:
        for item_id in ("a", "b", "c"):
            assert (await http.get(f"/items/{item_id}")).text == item_id
        assert (await http.post("/items/a")).status_code == 405
        assert (await http.get("/broken")).status_code == 500
        streamed = await http.get("/stream")
        assert streamed.status_code == 206 and streamed.text == "chunk 0\nchunk 1\nchunk 2\n"
        assert (await http.get("/wp-login.php")).status_code == 404

    seen = parse(metrics.render().decode())
    assert seen.count(REQUESTS, route="/items/{item_id}", method="GET", status="200") == 3
    assert seen.count(REQUESTS, route="/items/{item_id}", method="POST", status="405") == 1
    assert seen.count(REQUESTS, route="/broken", method="GET", status="500") == 1  # raised before any response
    assert seen.count(REQUESTS, route="/stream", method="GET", status="206") == 1
    assert seen.count(REQUESTS, route="unmatched", method="GET", status="404") == 1
    assert seen.label_values(f"{REQUESTS}_count", "route") == {"/items/{item_id}", "/broken", "/stream", "unmatched"}
    # Each observation landed in a bucket and added its duration.
    assert seen.value(f"{REQUESTS}_bucket", route="/items/{item_id}", method="GET", status="200", le="+Inf") == 3
    assert seen.value(f"{REQUESTS}_sum", route="/items/{item_id}", method="GET", status="200") > 0


def test_made_up_methods_share_one_label() -> None:
    metrics = Metrics()
    for method in ("BREW", "PROPFIND", "X" * 40):
        metrics.observe_request("/items/{item_id}", method, 405, 0.001)
    metrics.observe_request("/items/{item_id}", "GET", 200, 0.001)
    seen = parse(metrics.render().decode())
    assert seen.label_values(f"{REQUESTS}_count", "method") == {"other", "GET"}
    assert seen.count(REQUESTS, method="other") == 3


def test_process_metrics_are_exported_with_the_broker_metrics() -> None:
    seen = parse(Metrics().render().decode())
    assert seen.value("process_resident_memory_bytes") > 0
    assert seen.has("python_info")


def test_the_readme_documents_every_broker_metric() -> None:
    metrics = Metrics()
    metrics.update_cluster(ClusterSnapshot(1, 2, 3, 4, 5))
    exported = {family.name for family in text_string_to_metric_families(metrics.render().decode())
                if family.name.startswith("broker_") and not family.name.endswith("_created")}
    readme = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    table = readme[readme.index("## Metrics"):readme.index("## Run it in a container")]
    documented = set(re.findall(r"^\| `(broker_[a-z_]+)` \|", table, re.MULTILINE))
    suffixed = {name.removesuffix("_total") for name in documented}
    assert exported == suffixed, f"docs/operations.md table and /metrics differ: {sorted(exported ^ suffixed)}"
