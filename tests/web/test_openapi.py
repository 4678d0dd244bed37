"""openapi.yaml is valid OpenAPI 3.1 and lists exactly the routes the broker serves."""

from __future__ import annotations

import re
from pathlib import Path

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
