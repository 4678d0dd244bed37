"""`python -m bench.serve_bare --port N`: the floor, Starlette routes that answer 200 and do nothing else.

`GET /auth/verify` answers an empty 200; with BENCH_BARE_ANSWER_HEADERS set (JSON), a 200 with those headers,
the broker's answer without the broker's work. `POST /oauth/token` reads its body and answers a fixed JSON body
shaped and sized like the broker's token response (an ES256 access token on a loopback issuer, a refresh
token of the broker's format), with the same no-store headers, so a chained refresh driver can run against
it unchanged: it always hands back the same refresh token.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.serving import port_argument, serve_factory

# As long as the broker's: brt1.<user id, 22>.<family id, 32>.<secret, 43>.
BARE_REFRESH_TOKEN = f"brt1.{'u' * 22}.{'f' * 32}.{'s' * 43}"
ACCESS_TOKEN_CHARS = 624  # an ES256 access token for a session on http://127.0.0.1:<5-digit port>
TOKEN_RESPONSE = json.dumps(
    {"access_token": "a" * ACCESS_TOKEN_CHARS, "refresh_token": BARE_REFRESH_TOKEN, "expires_in": 300,
     "scope": "user.info.basic user.info.profile", "token_type": "Bearer"},
    separators=(",", ":")).encode()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# Set by the stack for the "same answer" floor: the headers the broker's /auth/verify answered, as JSON.
ANSWER_HEADERS = "BENCH_BARE_ANSWER_HEADERS"


async def verify(request: Request) -> Response:
    headers = request.app.state.answer_headers
    return Response(status_code=200, headers=headers) if headers else Response(status_code=200)


async def token(request: Request) -> Response:
    await request.body()
    return Response(TOKEN_RESPONSE, status_code=200, headers=NO_STORE, media_type="application/json")


def create_bare_app() -> Starlette:
    app = Starlette(routes=[Route("/auth/verify", verify, methods=["GET"]),
                            Route("/oauth/token", token, methods=["POST"])])
    app.state.answer_headers = json.loads(os.environ.get(ANSWER_HEADERS) or "{}")
    return app


def main() -> None:
    args = port_argument()
    serve_factory("bench.serve_bare:create_bare_app", args.port, args.workers)


if __name__ == "__main__":
    main()
