"""Starlette's router with the exact paths looked up in a dict: one route match per request instead of a scan.

Starlette tries every route in order until one matches; /oauth/introspect is the 23rd of the table, so each call
paid for 22 regular-expression matches that could not succeed. Here a path with no parameters goes straight to the
routes registered for it, and the answer is the one the ordered scan would give: a path is looked up only when no
route with parameters (or of another kind) that could match it comes before the last route registered for it.
Anything the lookup does not settle (an unknown path, a method no route for that path takes: 404 and 405) goes
through Starlette's own scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send


def _exact(route: BaseRoute) -> bool:
    return isinstance(route, Route) and not route.param_convertors


def _may_match(route: BaseRoute, path: str) -> bool:
    """Whether `route` (one with parameters, or a mount) could answer `path`; unknown kinds are assumed to."""
    return route.path_regex.match(path) is not None if isinstance(route, Route) else True


def exact_index(routes: Sequence[BaseRoute]) -> dict[str, tuple[Route, ...]]:
    """Each exact path with its routes in table order, for the paths a lookup answers as the scan would."""
    positions: dict[str, list[int]] = {}
    for position, route in enumerate(routes):
        if _exact(route):
            positions.setdefault(route.path, []).append(position)  # type: ignore[attr-defined]
    index: dict[str, tuple[Route, ...]] = {}
    for path, where in positions.items():
        ahead = routes[:where[-1]]
        if not any(not _exact(route) and _may_match(route, path) for route in ahead):
            index[path] = tuple(routes[position] for position in where)  # type: ignore[misc]
    return index


class IndexedRouter(Router):
    def __init__(self, routes: Sequence[BaseRoute], **options: Any) -> None:
        super().__init__(routes, **options)
        self._index = exact_index(self.routes)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._index.get(get_route_path(scope), ()):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)
