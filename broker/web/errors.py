"""The one place where errors become responses: HTML pages for people, OAuth JSON for everything else."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from broker.errors import BrokerError, InvalidRequest, MethodNotAllowed, NotFound, StoreUnavailable
from broker.web.cors import cors_headers
from broker.web.render import html_error, json_error, wants_html
from broker.web.request_metrics import route_label
from broker.web.services import services

log = logging.getLogger("broker.web")


def _path(request: Request) -> str:
    # From the scope, not request.url: building the URL parses the Host header, which a client may make
    # unparseable ("[", bytes that are not UTF-8).
    return str(request.scope.get("path", ""))


async def broker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BrokerError)
    if isinstance(exc, StoreUnavailable):
        services(request).metrics.redis_unavailable(route_label(request.scope))
    level = logging.WARNING if exc.status >= 500 else logging.INFO
    log.log(level, "request failed: %s %s -> %s %s%s", request.method, _path(request), exc.status, exc.code,
            f" ({exc.log_detail})" if exc.log_detail else "")
    if wants_html(request):
        return html_error(request, exc)
    return json_error(exc, extra_headers=cors_headers(request))  # a browser app may read why it was refused


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: BrokerError
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif 400 <= exc.status_code < 500:
        # Starlette's own refusals, such as a multipart body it cannot parse: the client's fault, in our shape.
        error = InvalidRequest("The request could not be read.", log_detail=str(exc.detail))
        error.status = exc.status_code
    else:
        error = BrokerError()
        error.status = exc.status_code
    # Routing refusals (no such path, or not this method) are JSON everywhere; a page's own refusals take its shape.
    response = json_error(error) if exc.status_code in (404, 405) else await broker_error(request, error)
    if exc.headers:
        response.headers.update(exc.headers)
    if "allow" in response.headers:
        # Starlette lists a route's methods in set order, which changes with the hash seed: one stable order.
        methods = sorted(method.strip() for method in response.headers["allow"].split(","))
        response.headers["allow"] = ", ".join(methods)
    return response


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log; the client sees only the generic error.
    log.exception("unhandled error on %s %s", request.method, _path(request), exc_info=exc)
    error = BrokerError()
    return html_error(request, error) if wants_html(request) else json_error(error)


EXCEPTION_HANDLERS = {BrokerError: broker_error, HTTPException: http_error, Exception: unexpected_error}
