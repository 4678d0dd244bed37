"""/tiktok/{path}: TikTok's API for downstream services, with the user's TikTok token attached by the broker.

Callers authenticate with a broker access JWT (`Authorization: Bearer`), or, for background jobs, with a
confidential client's Basic credentials plus `X-Broker-Subject: <sub>`.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from urllib.parse import unquote, urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from broker.errors import InvalidClient, InvalidRequest, InvalidToken
from broker.flows.tiktok_api import Caller
from broker.web.render import NO_STORE
from broker.web.services import Services, services

SUBJECT_HEADER = "x-broker-subject"


def _credentials(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower(), value.strip()


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("Malformed Basic credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("Malformed Basic credentials.")
    return unquote(client_id), unquote(secret)


def _parameters(request: Request) -> dict[str, str]:
    """The query's parameters, each named once. A repeated name is refused rather than guessed at: the scope
    check reads one `fields`, and TikTok might act on another."""
    items = request.query_params.multi_items()
    params = dict(items)
    if len(params) != len(items):
        repeated = next(name for name, count in Counter(name for name, _ in items).items() if count > 1)
        raise InvalidRequest(f"The query parameter {repeated} appears more than once.")
    return params


async def _caller(svc: Services, request: Request) -> Caller:
    scheme, value = _credentials(request)
    if scheme == "bearer" and value:
        return await svc.tiktok_api.caller_for_token(value)
    if scheme == "basic":
        client_id, secret = _basic(value)
        client = svc.clients.authenticate(client_id, secret)
        return svc.tiktok_api.caller_for_service(client, request.headers.get(SUBJECT_HEADER))
    raise InvalidToken("A broker access token (Bearer) or a service credential (Basic) is required.")


async def proxy(request: Request) -> Response:
    svc = services(request)
    path = "/" + request.path_params["path"]
    svc.tiktok_api.allowed_path(path)  # an unknown path is 404 whoever asks, before any credential check
    params = _parameters(request)
    caller = await _caller(svc, request)
    body = await request.body()
    # TikTok gets the very parameters that were checked, encoded afresh: never bytes that another parser might
    # split differently (a raw "#", a stray "%" or ";").
    answer = await svc.tiktok_api.forward(caller, method=request.method, path=path,
                                          query=urlencode(params).encode(), params=params,
                                          headers=dict(request.headers), body=body)
    return StreamingResponse(answer.body, status_code=answer.status, headers={**NO_STORE, **answer.headers},
                             background=BackgroundTask(answer.close))
