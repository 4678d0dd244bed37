"""`python -m bench.serve_bare --port N`: the floor, a Starlette route that answers 200 and does nothing else."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.serving import port_argument, serve


async def verify(request: Request) -> Response:
    return Response(status_code=200)


def create_bare_app() -> Starlette:
    return Starlette(routes=[Route("/auth/verify", verify, methods=["GET"])])


def main() -> None:
    serve(create_bare_app(), port_argument().port)


if __name__ == "__main__":
    main()
