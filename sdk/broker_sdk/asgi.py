"""Starlette/FastAPI integration: a pure ASGI middleware and a `require_claims` dependency."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from broker_sdk.dpop import DPoPChecker, bound_key
from broker_sdk.errors import TokenRejected, VerifierUnavailable
from broker_sdk.verifier import BrokerVerifier, Claims

log = logging.getLogger(__name__)

STATE_KEY = "broker_claims"  # request.state.broker_claims, scope["state"]["broker_claims"]
_VERIFIED_BY = "broker_sdk.verifier"  # scope key: which verifier produced the claims in the state
MISSING_TOKEN = "missing bearer token"  # noqa: S105 (a message, not a password)
RETRY_AFTER = "5"
_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')  # RFC 6750 error_description characters


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; TokenRejected when there is none."""
    if not authorization:
        raise TokenRejected(MISSING_TOKEN)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise TokenRejected("malformed authorization header")
    return token


def challenge(reason: str, scheme: str = "Bearer") -> str:
    """The WWW-Authenticate value: no error code when no token was sent at all (RFC 6750 section 3.1); the DPoP
    scheme (RFC 9449 section 7.1) when the request or its token was DPoP's."""
    if reason == MISSING_TOKEN:
        return scheme
    return f'{scheme} error="invalid_token", error_description="{_UNSAFE.sub("", reason)}"'


def rejected_response(reason: str, scheme: str = "Bearer") -> JSONResponse:
    return JSONResponse({"error": "invalid_token", "error_description": reason}, status_code=401,
                        headers={"WWW-Authenticate": challenge(reason, scheme), "Cache-Control": "no-store"})


class DPoPTokenRejected(TokenRejected):
    """A refusal whose challenge names the DPoP scheme: the request or its token was DPoP's."""


async def verified_claims(scope: Scope, verifier: BrokerVerifier, dpop: DPoPChecker | None,
                          public_origin: str | None) -> Claims:
    """The claims of the request's access token. Without `dpop`: `Authorization: Bearer` only. With it, also
    `Authorization: DPoP` with its proof; and a DPoP-bound token (`cnf.jkt`) counts only with its proof, never as
    a bearer token (RFC 9449 section 7.1), so that a stolen bound token is worth nothing here."""
    headers = Headers(scope=scope)
    authorization = (headers.get("authorization") or "").strip()
    scheme, _, credentials = authorization.partition(" ")
    if dpop is None or scheme.lower() != "dpop":
        claims = await verifier.verify(bearer_token(authorization))
        if dpop is not None and bound_key(claims) is not None:
            raise DPoPTokenRejected("a DPoP-bound token needs Authorization: DPoP and its proof")
        return claims
    try:
        token = bearer_token(f"Bearer {credentials}")
        claims = await verifier.verify(token)
        method = "GET" if scope["type"] == "websocket" else scope["method"]  # a WebSocket handshake is a GET
        url = public_origin.rstrip("/") + scope["path"] if public_origin else str(HTTPConnection(scope).url)
        await dpop.check_bound(claims, token, proof=headers.get("dpop"), method=method, url=url)
    except DPoPTokenRejected:
        raise
    except TokenRejected as exc:
        raise DPoPTokenRejected(exc.reason) from None
    return claims


def _scheme_of(exc: TokenRejected) -> str:
    return "DPoP" if isinstance(exc, DPoPTokenRejected) else "Bearer"


def unavailable_response() -> JSONResponse:
    return JSONResponse({"error": "temporarily_unavailable",
                         "error_description": "The access token cannot be checked right now."},
                        status_code=503, headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"})


class BrokerAuthMiddleware:
    """Lets through only HTTP and WebSocket requests with a valid broker access token, putting its claims
    in `scope["state"]["broker_claims"]` (`request.state.broker_claims`).

    Otherwise HTTP gets 401 `{"error": "invalid_token", ...}` with WWW-Authenticate (503 when the keys or
    the introspection endpoint cannot be reached) and a WebSocket is closed with code 1008. A path in
    `exempt_paths` passes without a token: an exact match, or a prefix when the entry ends with "/".

    `dpop`: give a `DPoPChecker` when apps call this service directly with DPoP-bound tokens (see
    `verified_claims`); `public_origin` (`https://api.example.com`) is what such apps call, when a proxy in front
    changes the scheme or host this service sees. Behind the broker's gateway, which checks the proofs itself,
    leave it out.
    """

    def __init__(self, app: ASGIApp, verifier: BrokerVerifier, *, exempt_paths: Iterable[str] = (),
                 dpop: DPoPChecker | None = None, public_origin: str | None = None) -> None:
        self.app = app
        self.verifier = verifier
        self.dpop = dpop
        self.public_origin = public_origin
        paths = tuple(exempt_paths)
        self._exact = frozenset(path for path in paths if not path.endswith("/"))
        self._prefixes = tuple(path for path in paths if path.endswith("/"))

    def exempt(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        response: JSONResponse
        try:
            claims = await verified_claims(scope, self.verifier, self.dpop, self.public_origin)
        except TokenRejected as exc:
            response = rejected_response(exc.reason, _scheme_of(exc))
        except VerifierUnavailable as exc:
            log.warning("access token not checked: %s", exc)
            response = unavailable_response()
        else:
            scope.setdefault("state", {})[STATE_KEY] = claims
            scope[_VERIFIED_BY] = (self.verifier, self.dpop)
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
        else:
            await response(scope, receive, send)


def require_claims(verifier: BrokerVerifier, *, dpop: DPoPChecker | None = None,
                   public_origin: str | None = None) -> Callable[[Request], Awaitable[Claims]]:
    """A dependency giving the verified claims of the request's access token: `Depends(require_claims(v))`
    in FastAPI, `await dependency(request)` in Starlette. Raises HTTPException 401 (with WWW-Authenticate)
    or 503; reuses the claims when BrokerAuthMiddleware already checked the request with this verifier and
    this DPoP checker. `dpop` and `public_origin` as for BrokerAuthMiddleware."""

    async def broker_claims(request: Request) -> Claims:
        claims = request.scope.get("state", {}).get(STATE_KEY)
        if isinstance(claims, dict) and request.scope.get(_VERIFIED_BY) == (verifier, dpop):
            return claims
        try:
            claims = await verified_claims(request.scope, verifier, dpop, public_origin)
        except TokenRejected as exc:
            headers = {"WWW-Authenticate": challenge(exc.reason, _scheme_of(exc)), "Cache-Control": "no-store"}
            raise HTTPException(401, detail=exc.reason, headers=headers) from None
        except VerifierUnavailable as exc:
            log.warning("access token not checked: %s", exc)
            raise HTTPException(503, detail="The access token cannot be checked right now.",
                                headers={"Retry-After": RETRY_AFTER}) from None
        request.scope.setdefault("state", {})[STATE_KEY] = claims
        request.scope[_VERIFIED_BY] = (verifier, dpop)
        return claims

    return broker_claims
