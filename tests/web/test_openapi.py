"""openapi.yaml is valid OpenAPI 3.1, lists exactly the routes the broker serves, and documents errors in the shape
each endpoint answers them, with the headers their status implies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import validate
from starlette.routing import Route

from broker.web.routes import ROUTES

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
# Starlette writes "{path:path}" where OpenAPI writes "{path}".
CONVERTER = re.compile(r"\{(\w+):\w+\}")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def load_spec() -> dict[str, object]:
    return yaml.safe_load(SPEC.read_text())  # type: ignore[no-any-return]


def served() -> set[tuple[str, str]]:
    pairs = set()
    for route in ROUTES:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET route on its own
                pairs.add((CONVERTER.sub(r"{\1}", route.path), method.lower()))
    return pairs


def documented(spec: dict[str, object]) -> set[tuple[str, str]]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return {(path, method) for path, item in paths.items() for method in item if method in HTTP_METHODS}


def test_spec_is_valid_openapi_3_1() -> None:
    spec = load_spec()
    assert str(spec["openapi"]).startswith("3.1")
    validate(spec)


def test_spec_and_route_table_are_identical() -> None:
    spec = load_spec()
    assert documented(spec) == served()


def resolved(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def responses(spec: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(path, method, status, response) for every documented answer, $refs followed."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                for status, response in operation["responses"].items():
                    yield path, method, status, resolved(spec, response)


def renders_html(path: str, method: str) -> bool:
    for route in ROUTES:
        assert isinstance(route, Route)
        if CONVERTER.sub(r"{\1}", route.path) == path and method.upper() in (route.methods or ()):
            return bool(getattr(route.endpoint, "renders_html", False))
    raise AssertionError(f"{method} {path} is not served")


def test_errors_are_pages_on_browser_endpoints_and_json_elsewhere() -> None:
    spec = load_spec()
    for path, method, status, response in responses(spec):
        if not status.startswith(("4", "5")) or (path, status) == ("/readyz", "503"):  # the probe says what fails
            continue
        media = set(response.get("content", {}))
        where = f"{method.upper()} {path} {status}"
        # A bearer caller's 401 on a page's endpoint is JSON, like the rest of its answers.
        if renders_html(path, method) and (path, status) not in (("/logout", "401"), ("/account/sessions/end", "401")):
            assert "text/html" in media, where
        elif path.startswith("/tiktok/"):
            assert "application/json" in media, where  # the broker's errors; TikTok's pass through as sent
        else:
            assert media == {"application/json"}, where
            assert resolved(spec, response["content"]["application/json"]["schema"]) == \
                spec["components"]["schemas"]["OAuthError"], where


def test_every_answer_documents_the_headers_its_status_implies() -> None:
    spec = load_spec()
    for path, method, status, response in responses(spec):
        headers = {name.lower() for name in response.get("headers", {})}
        where = f"{method.upper()} {path} {status}"
        assert "x-request-id" in headers, where
        if status in ("401",):
            assert "www-authenticate" in headers, where
        if status in ("429", "503"):
            assert "retry-after" in headers, where
        if status.startswith("3") and status != "304":
            assert "location" in headers, where
