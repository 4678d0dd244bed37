"""Figure: the broker beside a widely used OpenID provider on this machine, panva's oidc-provider (Node), under
the same chained refresh load and the same introspection load, each server with a Redis of its own.

Both sides serve one confidential client authenticating with client_secret_basic. Refresh: 32 chains, each its
own grant or family presenting the latest refresh token it got (bench/chained.py); each answer carries a rotated
refresh token, an ES256 access JWT and an ES256 ID token (scope openid) on both sides. Introspection: the client
introspects one of its access tokens, over and over (bench/loadgen.py): the broker's JWT (its signature checked
and every denylist read from Redis; with its per-process cache off, and as it runs by default), the peer's
opaque token (read from Redis). Sides alternate every round; CPU µs/req is the server process's own CPU time
(user and system, from /proc) over the requests it answered in the round.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from bench import peer
from bench.chained import ChainSpec, measure_chains, post_request
from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.loadgen import LoadResult, LoadSpec, measure
from bench.report import FigureResult, Table, num, ratio, spread
from bench.session import app_families
from bench.stack import APP_ID, APP_SECRET, Stack
from bench.stats import interleaved, median, ratios

BROKER_TOKEN, BROKER_INTROSPECT = "/oauth/token", "/oauth/introspect"


def _basic(client_id: str, secret: str) -> tuple[str, str]:
    return "Authorization", "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass(frozen=True)
class Measured:
    result: LoadResult
    cpu_us: float  # server CPU per answered request


def _timed(pid: int, load: Callable[[], LoadResult]) -> Measured:
    before = peer.cpu_seconds(pid)
    result = load()
    spent = peer.cpu_seconds(pid) - before
    return Measured(result, spent / result.completed * 1e6 if result.completed else 0.0)


class Chains:
    """Refresh chains for one side, kept across rounds; `refill` gives broken chains a new grant or family."""

    def __init__(self, size: int, new_tokens: Callable[[int], list[str]]) -> None:
        self.new_tokens = new_tokens
        self.tokens: list[str | None] = list(new_tokens(size))

    def round(self, spec: ChainSpec) -> LoadResult:
        missing = [i for i, token in enumerate(self.tokens) if token is None]
        for index, token in zip(missing, self.new_tokens(len(missing)) if missing else [], strict=True):
            self.tokens[index] = token
        return measure_chains(spec, self.tokens)


@dataclass(frozen=True)
class Side:
    label: str
    rps: float
    p50_ms: float
    cpu_us: float
    ratio: float
    ratios: list[float]
    bad: int
    rounds: list[dict[str, object]]
    baseline: bool = False

    def row(self) -> tuple[str, ...]:
        return (self.label, num(self.rps, 0), num(self.p50_ms, 2), num(self.cpu_us, 0), ratio(self.ratio),
                "-" if self.baseline else spread(self.ratios), str(self.bad))


def _side(label: str, measured: list[Measured], base: list[Measured]) -> Side:
    results = [m.result for m in measured]
    per_round = ratios([r.rps for r in results], [b.result.rps for b in base])
    return Side(label=label, rps=median([r.rps for r in results]), p50_ms=median([r.p50_ms for r in results]),
                cpu_us=median([m.cpu_us for m in measured]), ratio=median(per_round), ratios=per_round,
                bad=sum(r.completed - r.statuses.get(200, 0) + r.errors for r in results),
                rounds=[{**r.summary(), "cpu_us": m.cpu_us} for r, m in zip(results, measured, strict=True)],
                baseline=measured is base)


HEADERS = ("side", "req/s", "p50 ms", "server CPU µs/req", "vs peer", "range", "non-200")


def _refresh(stack: Stack, config: BenchConfig, the_peer: peer.Peer) -> tuple[Table, dict[str, object]]:
    broker = stack.broker
    basic = (_basic(APP_ID, APP_SECRET),)
    ours = Chains(config.concurrency, lambda n: [pair.refresh_token for pair in
                                                  asyncio.run(app_families(broker.settings, APP_ID, n))])
    theirs = Chains(config.concurrency, lambda n: [t["refresh_token"] for t in the_peer.mint(n)])
    specs = {"peer": ChainSpec(the_peer.port, peer.TOKEN_PATH, duration=config.http_seconds,
                               max_requests=config.max_requests_per_round, headers=(_basic(peer.CLIENT_ID,
                                                                                            peer.CLIENT_SECRET),)),
             "broker": ChainSpec(broker.port, BROKER_TOKEN, duration=config.http_seconds,
                                 max_requests=config.max_requests_per_round, headers=basic)}
    warm = {name: ChainSpec(spec.port, spec.path, duration=config.http_warmup_seconds, headers=spec.headers)
            for name, spec in specs.items()}
    theirs.round(warm["peer"])
    ours.round(warm["broker"])
    rounds = interleaved({"peer": functools.partial(_timed, the_peer.process.pid,
                                                    functools.partial(theirs.round, specs["peer"])),
                          "broker": functools.partial(_timed, broker.process.pid,
                                                      functools.partial(ours.round, specs["broker"]))},
                         config.http_rounds)
    sides = {"peer": _side("oidc-provider (peer)", rounds["peer"], rounds["peer"]),
             "broker": _side("tiktok-broker", rounds["broker"], rounds["peer"])}
    table = Table(
        title=f"Chained refresh, broker vs oidc-provider (one process each; median of {config.http_rounds} rounds)",
        headers=HEADERS, rows=tuple(side.row() for side in sides.values()),
        notes=(f"{config.concurrency} keep-alive connections, each its own grant or family presenting the latest "
               "refresh token it got; client_secret_basic; every answer: a rotated refresh token, an ES256 access "
               "JWT and an ES256 ID token",
               "the broker's rotation is one Lua script (reuse detection, a 10 s grace window with a sealed copy, "
               "family caps); the peer consumes the old token and saves the new one in separate round trips"))
    return table, {name: asdict(side) for name, side in sides.items()}


def _introspection_request(port: int, path: str, token: str, credentials: tuple[str, str]) -> bytes:
    return post_request(path, port, b"token=" + token.encode("ascii"), (credentials,))


def _active(url: str, token: str, credentials: tuple[str, str]) -> None:
    answer = httpx.post(url, data={"token": token}, headers=dict([credentials]), timeout=10)
    if answer.status_code != 200 or answer.json().get("active") is not True:
        raise RuntimeError(f"introspection at {url} answered {answer.status_code}: {answer.text[:200]}")


def _introspection(stack: Stack, config: BenchConfig, the_peer: peer.Peer) -> tuple[Table, dict[str, object]]:
    broker = stack.broker
    # The same issuer as the broker that minted the token: the cache is the one difference.
    cold = stack.start_broker_with("broker-cache-off", BROKER_LOCAL_CACHE_SIZE="0",
                                   BROKER_ISSUER=broker.settings.issuer)
    access = asyncio.run(app_families(broker.settings, APP_ID, 1))[0].access_token
    theirs = the_peer.mint(1)[0]["access_token"]
    ours, their_credentials = _basic(APP_ID, APP_SECRET), _basic(peer.CLIENT_ID, peer.CLIENT_SECRET)
    _active(cold.url + BROKER_INTROSPECT, access, ours)
    _active(broker.url + BROKER_INTROSPECT, access, ours)
    _active(the_peer.url + peer.INTROSPECTION_PATH, theirs, their_credentials)

    def spec(port: int, path: str, token: str, credentials: tuple[str, str], duration: float) -> LoadSpec:
        return LoadSpec(port, _introspection_request(port, path, token, credentials), concurrency=config.concurrency,
                        duration=duration, max_requests=config.max_requests_per_round)

    sides = {"peer": (the_peer.process.pid, the_peer.port, peer.INTROSPECTION_PATH, theirs, their_credentials),
             "cold": (cold.pid, cold.port, BROKER_INTROSPECT, access, ours),
             "warm": (broker.process.pid, broker.port, BROKER_INTROSPECT, access, ours)}
    for _, port, path, token, credentials in sides.values():
        measure(spec(port, path, token, credentials, config.http_warmup_seconds))
    rounds = interleaved({name: functools.partial(_timed, pid, functools.partial(
        measure, spec(port, path, token, credentials, config.http_seconds)))
        for name, (pid, port, path, token, credentials) in sides.items()}, config.http_rounds)
    labels = {"peer": "oidc-provider (peer), opaque token", "cold": "tiktok-broker, JWT, cache off",
              "warm": "tiktok-broker, JWT, cache on (default)"}
    measured = {name: _side(labels[name], results, rounds["peer"]) for name, results in rounds.items()}
    table = Table(
        title=f"Introspection, broker vs oidc-provider (one process each; median of {config.http_rounds} rounds)",
        headers=HEADERS, rows=tuple(side.row() for side in measured.values()),
        notes=(f"closed loop, {config.concurrency} keep-alive connections, the same token each time; "
               "client_secret_basic",
               "cache off: an ES256 verification and one Redis round trip (every denylist) per call; cache on: "
               "a token seen before skips both until Redis reports a write; the peer reads its token from Redis"))
    return table, {name: asdict(side) for name, side in measured.items()}


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    why = peer.unavailable()
    if why is not None:
        return FigureResult("peer", (Table(title="Broker vs oidc-provider: skipped", headers=("why",),
                                           rows=((why,),), notes=()),), {"skipped": why})
    the_peer = peer.start(stack.workdir)
    try:
        refresh, refresh_data = _refresh(stack, config, the_peer)
        introspection, introspection_data = _introspection(stack, config, the_peer)
    finally:
        the_peer.stop()
    return FigureResult("peer", (refresh, introspection), {"refresh": refresh_data,
                                                           "introspection": introspection_data})


FIGURE = Figure("peer", "the same refresh and introspection loads against panva's oidc-provider (Node)", run)
