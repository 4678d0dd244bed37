"""Figure: `TokenService.verify` and `BrokerVerifier.verify` on an access token vs a bare `cryptography` verify.

Both verify with PyJWT under the SDK's rules (pre-built key objects, the algorithm pinned by the key). The floor
verifies the same signing input and signature with a pre-parsed public key; the signature is converted (ES256:
raw r||s to DER) before timing, so the floor is the signature check and nothing else. `BrokerVerifier`
(broker_sdk, what downstream services run) gets the key ring's JWKS once before timing and is driven without an
event loop: with a fresh JWKS its verify never waits, so the loop's own cost per call is left out. First sight
(caches of verified tokens off) and a repeat (caches on, the token seen before) are timed apart.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.report import FigureResult, Table, num, ratio, spread
from bench.stack import Stack
from bench.stats import interleaved, median, ratios
from bench.timing import calibrate, time_batch
from broker.clock import SystemClock
from broker.signing.keyring import KeyRing, create_key
from broker.signing.tokens import TokenService
from broker_sdk import BrokerVerifier, JwksCache

ALGORITHMS = ("ES256", "EdDSA", "RS256")
ISSUER = "http://127.0.0.1:8080"
T = TypeVar("T")


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _floor(token: str, public_key: object) -> Callable[[], None]:
    header, payload, signature = token.split(".")
    message = f"{header}.{payload}".encode()
    raw = _b64(signature)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        half = len(raw) // 2
        der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        algorithm = ec.ECDSA(hashes.SHA256())
        return lambda: public_key.verify(der, message, algorithm)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return lambda: public_key.verify(raw, message)
    if isinstance(public_key, rsa.RSAPublicKey):
        pad, digest = padding.PKCS1v15(), hashes.SHA256()
        return lambda: public_key.verify(raw, message, pad, digest)
    raise TypeError(f"unexpected key type {type(public_key).__name__}")


def _run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("BrokerVerifier waited for I/O: its JWKS was not fresh")


def _library_verifier(keyring: KeyRing, cleanup: ExitStack, verified_cache_size: int) -> BrokerVerifier:
    """A BrokerVerifier holding the key ring's JWKS, handed to it once by an in-memory transport."""
    document = keyring.jwks()

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=document.body, headers={"Cache-Control": document.cache_control})

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    verifier = BrokerVerifier(ISSUER, ISSUER, jwks=JwksCache(f"{ISSUER}/.well-known/jwks.json", http=http),
                              verified_cache_size=verified_cache_size)
    loop = asyncio.new_event_loop()
    cleanup.callback(loop.close)
    cleanup.callback(lambda: loop.run_until_complete(http.aclose()))
    loop.run_until_complete(verifier.jwks.keys())  # the one fetch, before any timing
    return verifier


def _sides(alg: str, keys_dir: Path, cleanup: ExitStack) -> dict[str, Callable[[], object]]:
    clock = SystemClock()
    create_key(keys_dir, alg=alg, activate_at=clock.now() - 1, clock=clock, jwks_max_age=300)
    keyring = KeyRing(keys_dir, clock=clock, max_token_lifetime=300, jwks_max_age=300)
    # The verification itself: the cache of tokens seen before is off (each call checks the signature).
    service = TokenService(keyring, issuer=ISSUER, audience=ISSUER, ttl=300, leeway=10, clock=clock,
                           verified_cache_size=0)
    # As the broker runs: a token seen before skips the signature (its claims and key are still checked).
    remembering = TokenService(keyring, issuer=ISSUER, audience=ISSUER, ttl=300, leeway=10, clock=clock)
    # Shaped like a session's token (see SessionService.access_token_for).
    token = service.issue(sub="u" * 22, sid="s" * 32, scope="user.info.basic user.info.profile",
                          extra={"tiktok_open_id": "7c1e2d34-5f6a-4b7c-8d9e-0a1b2c3d4e5f",
                                 "name": "Mara Example"}).token
    floor = _floor(token, keyring.signing_key().public_key)
    floor()  # raises if the floor does not accept the token
    library = _library_verifier(keyring, cleanup, verified_cache_size=0)
    library_remembering = _library_verifier(keyring, cleanup, verified_cache_size=1000)
    assert service.verify(token)["sub"] == _run_now(library.verify(token))["sub"] == "u" * 22
    assert _run_now(library_remembering.verify(token))["sub"] == remembering.verify(token)["sub"]
    # Timed in this order each round: the floor sits between the two verifiers, so that each is compared
    # with a floor batch measured right next to it.
    return {"broker": lambda: service.verify(token), "floor": floor,
            "library": lambda: _run_now(library.verify(token)), "seen": lambda: remembering.verify(token),
            "library_seen": lambda: _run_now(library_remembering.verify(token))}


@dataclass(frozen=True)
class AlgResult:
    broker_us: float  # TokenService.verify
    library_us: float  # broker_sdk's BrokerVerifier.verify
    seen_us: float  # TokenService.verify of a token it verified before
    library_seen_us: float  # BrokerVerifier.verify of a token it verified before
    floor_us: float
    ratio: float  # broker / floor, median of the per-round ratios
    library_ratio: float
    batch_sizes: dict[str, int]
    rounds: dict[str, list[float]]


def _batch(call: Callable[[], object], count: int) -> Callable[[], float]:
    return lambda: time_batch(call, count)


def _measure(alg: str, keys_dir: Path, config: BenchConfig) -> AlgResult:
    with ExitStack() as cleanup:
        sides = _sides(alg, keys_dir, cleanup)
        counts = {name: calibrate(call, config.jwt_batch_seconds) for name, call in sides.items()}
        rounds = interleaved({name: _batch(call, counts[name]) for name, call in sides.items()}, config.jwt_rounds)
    per_round = ratios(rounds["broker"], rounds["floor"])
    library_per_round = ratios(rounds["library"], rounds["floor"])
    seen_per_round = ratios(rounds["seen"], rounds["floor"])
    library_seen_per_round = ratios(rounds["library_seen"], rounds["floor"])
    return AlgResult(median(rounds["broker"]), median(rounds["library"]), median(rounds["seen"]),
                     median(rounds["library_seen"]), median(rounds["floor"]), median(per_round),
                     median(library_per_round), counts,
                     {**rounds, "ratio": per_round, "library_ratio": library_per_round, "seen_ratio": seen_per_round,
                      "library_seen_ratio": library_seen_per_round})


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    rows: list[tuple[str, ...]] = []
    data: dict[str, object] = {"unit": "us_per_op", "rounds": config.jwt_rounds}
    with tempfile.TemporaryDirectory(prefix="bench-jwt-") as tmp:
        for alg in ALGORITHMS:
            found = _measure(alg, Path(tmp) / alg, config)
            rows.append((alg, "TokenService", num(found.broker_us), num(found.floor_us), ratio(found.ratio),
                         spread(found.rounds["ratio"]), num(found.broker_us - found.floor_us)))
            rows.append((alg, "BrokerVerifier", num(found.library_us), num(found.floor_us),
                         ratio(found.library_ratio), spread(found.rounds["library_ratio"]),
                         num(found.library_us - found.floor_us)))
            rows.append((alg, "TokenService, seen before", num(found.seen_us), num(found.floor_us),
                         ratio(median(found.rounds["seen_ratio"])), spread(found.rounds["seen_ratio"]),
                         num(found.seen_us - found.floor_us)))
            rows.append((alg, "BrokerVerifier, seen before", num(found.library_seen_us), num(found.floor_us),
                         ratio(median(found.rounds["library_seen_ratio"])), spread(found.rounds["library_seen_ratio"]),
                         num(found.library_seen_us - found.floor_us)))
            data[alg] = asdict(found)
    table = Table(
        title=f"JWT verification in-process (µs/op, median of {config.jwt_rounds} interleaved rounds)",
        headers=("alg", "verifier", "µs", "floor µs", "ratio to floor", "ratio range", "overhead µs"),
        rows=tuple(rows),
        notes=("TokenService = the broker's verify, its cache of verified tokens off; BrokerVerifier = "
               "broker_sdk's (downstream services), JWKS fetched before timing, its cache off; both are PyJWT "
               "under the SDK's claim rules; floor = cryptography verify of the same bytes, key pre-parsed",
               "seen before = as each runs by default, on a token it has verified before: the signature "
               "is skipped, the claims and the key's presence are checked"),
    )
    return FigureResult("jwt_verify", (table,), data)


FIGURE = Figure("jwt_verify", "JWT verification in-process, broker vs cryptography floor", run)
