"""/tiktok/{path}: TikTok's API for downstream services, with the user's TikTok token attached by the broker.

Callers authenticate with a broker access JWT (`Authorization: Bearer`, or `DPoP` with a proof for a bound one),
or, for background jobs, with a confidential client's Basic credentials plus `X-Broker-Subject: <sub>`.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from broker.errors import InvalidRequest, InvalidToken
from broker.flows.tiktok_api import MAX_BODY, Caller
from broker.web.bodies import read_body
from broker.web.client_addr import client_ip
from broker.web.credentials import basic_credentials
from broker.web.dpop import checked_claims, presented_token
from broker.web.render import NO_STORE
from broker.web.services import Services, services

SUBJECT_HEADER = "x-broker-subject"


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
    if presented_token(request) is not None:
        return svc.tiktok_api.caller_for_claims((await checked_claims(svc, request))[1])
    basic = basic_credentials(request)
    if basic is not None:
        client_id, secret = basic
        # A secret is checked here as at the token endpoint, so guesses are charged to the same kinds of bucket:
        # the caller's address and the client it names.
        await svc.limits.check("proxy", ip=client_ip(request), client_id=client_id)
        client = svc.clients.authenticate(client_id, secret)
        return svc.tiktok_api.caller_for_service(client, request.headers.get(SUBJECT_HEADER))
    raise InvalidToken("A broker access token (Bearer) or a service credential (Basic) is required.")


async def proxy(request: Request) -> Response:
    svc = services(request)
    path = "/" + request.path_params["path"]
    svc.tiktok_api.allowed_path(path)  # an unknown path is 404 whoever asks, before any credential check
    params = _parameters(request)
    caller = await _caller(svc, request)
    body = await read_body(request, MAX_BODY)
    # TikTok gets the very parameters that were checked, encoded afresh: never bytes that another parser might
    # split differently (a raw "#", a stray "%" or ";").
    answer = await svc.tiktok_api.forward(caller, method=request.method, path=path,
                                          query=urlencode(params).encode(), params=params,
                                          headers=dict(request.headers), body=body)
    return StreamingResponse(answer.body, status_code=answer.status, headers={**NO_STORE, **answer.headers},
                             background=BackgroundTask(answer.close))
