"""The lean path of GET /auth/verify: an allowed check answered without the generic middleware and router.

A gateway calls /auth/verify before every request it lets through, so the broker's share of that call is worth
keeping small. This pure-ASGI layer sits outside the generic stack (the request metrics, the request id, the
router, Starlette's Request and Response) and answers an allowed check itself, with what those layers would have
added: the request id (echoed, and on every log line), the request's metric under the route's own label, the same
headers byte for byte. It runs the very checks the route runs (`bearer_check`, `cookie_check`), so every
protection holds: the denylists, the session cache's trust window, the audience rule.

Anything else goes through the whole stack: a denial or an error (the store away: 503), with what was found here so
that the check is not run twice (a frozen Redis must cost one deadline, not two), HEAD, a query string, Envoy's
paths, and any Authorization scheme other than Bearer (a DPoP proof, for one, is checked by the route).
"""

from __future__ import annotations

from time import perf_counter

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.errors import BrokerError, InvalidToken
from broker.logs import request_id
from broker.web.cookies import session_cookie_name
from broker.web.credentials import bearer_in
from broker.web.gateway import FOUND, NO_SESSION, Allowed, bearer_check, cookie_check
from broker.web.request_id import CHOSEN, request_id_for
from broker.web.services import Services

PATH = "/auth/verify"
# What Starlette's Response(status_code=200, headers=NO_STORE | ...) sends, in its order.
_START = ((b"content-length", b"0"), (b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
_BODY = {"type": "http.response.body", "body": b"", "more_body": False}


class GatewayFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._services: Services | None = None
        self._cookie_name = ""

    def _lean(self, scope: Scope) -> bool:
        return (scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET"
                and not scope["query_string"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._lean(scope):
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        svc = self._services
        if svc is None:
            svc = self._services = scope["app"].state.services
            self._cookie_name = session_cookie_name(svc.settings)
        authorization = cookie = incoming_id = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"cookie" and cookie is None:
                cookie = value.decode("latin-1")
            elif name == b"x-request-id" and incoming_id is None:
                incoming_id = value
        current = request_id_for(incoming_id or b"")
        context = request_id.set(current)
        try:
            try:
                allowed = await self._check(svc, authorization, cookie)
            except BrokerError as outcome:  # a denial, or the store away: the route answers it, without a second try
                scope[FOUND] = outcome
                allowed = None
            if allowed is not None:
                await send({"type": "http.response.start", "status": 200, "headers": [
                    *_START, (b"authorization", b"Bearer " + allowed.token.encode()),
                    (b"x-auth-request-user", allowed.user.encode()),
                    (b"x-auth-request-open-id", allowed.open_id.encode()), (b"x-request-id", current.encode())]})
                await send(_BODY)
                svc.metrics.observe_request(PATH, "GET", 200, perf_counter() - started)
                return
        finally:
            request_id.reset(context)
        scope[CHOSEN] = current  # the lines logged so far carry it: so does the answer
        await self.app(scope, receive, send)

    async def _check(self, svc: Services, authorization: str | None, cookie: str | None) -> Allowed | None:
        """Allowed, or None to leave the request to the route; a denial raises InvalidToken."""
        if authorization is not None:
            token = bearer_in(authorization)
            if token is None:
                return None  # another scheme (DPoP, Basic): the route decides
            return await bearer_check(svc, token)
        allowed = await cookie_check(svc, cookie_parser(cookie).get(self._cookie_name) if cookie else None)
        if allowed is None:
            raise InvalidToken(NO_SESSION)
        return allowed
