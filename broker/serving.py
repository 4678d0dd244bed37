"""How the commands serve HTTP: one uvicorn configuration, its event loop and parser, one or several workers.

uvicorn picks uvloop and httptools when they are installed (they are dependencies of the server), but only when it
sets up the loop itself: the commands therefore run their servers on the loop factory uvicorn chooses, never inside
a plain `asyncio.run`. With `--workers N` uvicorn's supervisor starts N processes on one listening socket, each
building the app from the environment (`worker_app`), each with its own per-process caches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when serving starts, so that `broker keys ...` does not load a web server
    import uvicorn

log = logging.getLogger("broker")

# The most a request's line and headers may take (what nginx's default buffers hold); see broker.bounded_http.
MAX_HEAD_BYTES = 32 * 1024
PARSERS = {"HttpToolsProtocol": "httptools", "H11Protocol": "h11"}
# The app factory each worker process calls (uvicorn imports it by name in the new process).
WORKER_FACTORY = "broker.serving:worker_app"


def uvicorn_config(app: object, host: str, port: int, *, workers: int = 1) -> uvicorn.Config:
    import uvicorn

    # log_config=None keeps the JSON logging set up in main() for uvicorn's own lines too.
    # proxy_headers=False: uvicorn must never rewrite the client address or scheme from X-Forwarded-* (it would
    # believe FORWARDED_ALLOW_IPS, 127.0.0.1 by default). BROKER_TRUSTED_PROXIES is the only source of trust,
    # applied by broker.web.client_addr to the untouched TCP peer.
    return uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False,  # type: ignore[arg-type]
                          proxy_headers=False, forwarded_allow_ips="", access_log=False, log_config=None,
                          loop="auto", http=http_protocol(), h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                          workers=workers, factory=isinstance(app, str))


def http_protocol() -> Any:
    """httptools with the broker's cap on request heads (broker.bounded_http); without httptools, uvicorn's h11,
    whose buffer limit is set to the same cap."""
    try:
        from broker.bounded_http import BoundedHttpToolsProtocol
    except ImportError:
        return "h11"
    return BoundedHttpToolsProtocol


def stack_description(config: uvicorn.Config) -> dict[str, str]:
    """The event loop, HTTP parser and Redis reply parser these servers run on."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from broker.store.redis import reply_parser

    factory = config.get_loop_factory()
    loop = "uvloop" if factory is not None and factory.__module__.split(".")[0] == "uvloop" else "asyncio"
    http = config.http if config.http != "auto" else AutoHTTPProtocol
    name = next((kind.__name__ for kind in getattr(http, "__mro__", ()) if kind.__name__ in PARSERS), str(http))
    parser = PARSERS.get(name, name)
    return {"loop": loop, "http": parser, "redis_parser": reply_parser()}


def announce(config: uvicorn.Config, workers: int) -> None:
    stack = stack_description(config)
    log.info("serving on %s with %s, Redis replies parsed by %s, %d worker%s", stack["loop"], stack["http"],
             stack["redis_parser"], workers, "" if workers == 1 else "s", extra=stack)


class Terminated(Exception):
    """SIGTERM arrived: unwind (stopping an embedded Redis on the way) and exit 0."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


async def _serve_all(servers: Sequence[uvicorn.Server]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))


def run_servers(configs: Sequence[uvicorn.Config]) -> None:
    """Serve every config in this process, on the loop uvicorn picks for the first."""
    import uvicorn

    # uvicorn shuts down gracefully on SIGTERM and then re-raises it to the handler it found; with the default
    # one the process would die on the spot, leaving an embedded redis-server behind. Ours unwinds instead.
    signal.signal(signal.SIGTERM, _on_sigterm)
    announce(configs[0], 1)
    with asyncio.Runner(loop_factory=configs[0].get_loop_factory()) as runner:
        runner.run(_serve_all([uvicorn.Server(config) for config in configs]))


def run_workers(config: uvicorn.Config, redis_url: str) -> None:
    """`workers` processes on one socket, supervised by uvicorn (it restarts a worker that dies and stops them all
    on SIGTERM or SIGINT). Each worker reads its settings from the environment; the Redis URL is handed down
    because an embedded Redis is started by this process, not named by a variable."""
    from uvicorn.supervisors import Multiprocess

    os.environ["BROKER_REDIS_URL"] = redis_url
    announce(config, config.workers)
    socket = config.bind_socket()
    try:
        Multiprocess(config, sockets=[socket]).run()
    finally:
        socket.close()


def worker_app() -> Any:
    """The broker as one worker process builds it: JSON logs, settings from the environment."""
    from broker.app import create_app
    from broker.config import load_settings
    from broker.logs import configure

    configure()
    logging.getLogger("uvicorn.access").propagate = False  # as access_log=False made it before configure() ran
    return create_app(load_settings())
