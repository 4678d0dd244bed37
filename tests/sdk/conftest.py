"""Shared pieces for broker_sdk tests: a counting JWKS endpoint over real HTTP, and a token forge."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.clock import Clock, SystemClock
from broker.signing import KeyRing, TokenService
from broker.signing.keyfiles import SigningKey
from broker_sdk.jws import normalize_low_s
from tests.support.servers import ThreadedServer

ISSUER = "https://broker.example"
AUDIENCE = "https://api.example"
TTL = 300
LEEWAY = 10


@dataclass
class Seen:
    if_none_match: str | None
    status: int


@dataclass
class JwksEndpoint:
    """Serves a KeyRing's JWKS as the broker does (Cache-Control, ETag, 304), recording every request.

    Switches: `down` answers 503; `cache_control` (None: the ring's; "": no header), `age` and `body`
    replace what is served."""

    ring: KeyRing | None = None
    down: bool = False
    cache_control: str | None = None
    age: int | None = None
    body: bytes | None = None
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            response = self._answer(request.headers.get("if-none-match"))
            self.seen.append(Seen(request.headers.get("if-none-match"), response.status_code))
            return response

        return Starlette(routes=[Route("/jwks.json", jwks)])

    def _answer(self, if_none_match: str | None) -> Response:
        if self.down:
            return Response("down", status_code=503)
        headers: dict[str, str] = {}
        if self.body is not None:
            body = self.body
        else:
            assert self.ring is not None
            document = self.ring.jwks()
            body, headers = document.body, {"ETag": document.etag, "Cache-Control": document.cache_control}
            if document.not_modified(if_none_match):
                return Response(status_code=304, headers=headers)
        if self.cache_control is not None:
            headers.pop("Cache-Control", None)
            if self.cache_control:
                headers["Cache-Control"] = self.cache_control
        if self.age is not None:
            headers["Age"] = str(self.age)
        return Response(body, media_type="application/json", headers=headers)

    @property
    def fetches(self) -> int:
        return len(self.seen)


@pytest.fixture
def serve() -> Iterator[list[ThreadedServer]]:
    """Start servers with `serve.append(ThreadedServer(app).start())`; all are stopped afterwards."""
    servers: list[ThreadedServer] = []
    yield servers
    for server in servers:
        server.stop()


def start(servers: list[ThreadedServer], endpoint: JwksEndpoint) -> str:
    server = ThreadedServer(endpoint.app()).start()
    servers.append(server)
    return f"{server.url}/jwks.json"


def make_service(keys_dir: Path, clock: Clock | None = None, *, max_age: int = 300,
                 issuer: str = ISSUER, audience: str = AUDIENCE) -> tuple[KeyRing, TokenService]:
    clock = clock or SystemClock()
    ring = KeyRing(keys_dir, clock=clock, max_token_lifetime=TTL + LEEWAY, jwks_max_age=max_age)
    return ring, TokenService(ring, issuer=issuer, audience=audience, ttl=TTL, leeway=LEEWAY, clock=clock)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: Mapping[str, object], claims: Mapping[str, object]) -> str:
    """header.payload. with no signature yet."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


@dataclass
class Forge:
    """Builds access tokens like the broker's, with any claim or header member changed (None removes)."""

    key: SigningKey
    now: float
    issuer: str = ISSUER
    audience: str = AUDIENCE

    def claims(self, **changes: object) -> dict[str, object]:
        now = int(self.now)
        claims: dict[str, object] = {"iss": self.issuer, "sub": "user-1", "aud": self.audience, "exp": now + TTL,
                                     "iat": now, "nbf": now, "jti": secrets.token_urlsafe(8), "sid": "s1",
                                     "scope": "openid"}
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def header(self, **changes: object) -> dict[str, object]:
        header: dict[str, object] = {"alg": self.key.alg, "kid": self.key.kid, "typ": "at+jwt"}
        header.update(changes)
        return {name: value for name, value in header.items() if value is not None}

    def token(self, *, header: Mapping[str, object] | None = None, signer: SigningKey | None = None,
              **changes: object) -> str:
        key = signer or self.key
        headers = dict(header if header is not None else self.header())
        alg = str(headers.pop("alg", key.alg))
        token = jwt.encode(self.claims(**changes), key.private_key, algorithm=alg, headers=headers)
        return normalize_low_s(token) if alg == "ES256" else token  # as the broker signs

    def signed(self, header: Mapping[str, object] | bytes, payload: Mapping[str, object] | bytes) -> str:
        """A token over exactly these header and payload bytes (JSON-encoded when given as mappings), with
        a genuine signature by the broker's key."""
        parts = [part if isinstance(part, bytes) else json.dumps(part).encode() for part in (header, payload)]
        return self.sign_text(f"{b64(parts[0])}.{b64(parts[1])}")

    def sign_text(self, signing_input: str) -> str:
        """signing_input plus a genuine signature over exactly that text."""
        signature = jwt.get_algorithm_by_name(self.key.alg).sign(signing_input.encode(), self.key.private_key)
        token = f"{signing_input}.{b64(signature)}"
        return normalize_low_s(token) if self.key.alg == "ES256" else token
