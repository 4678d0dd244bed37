"""Automatic key rotation over simulated time: the schedule, pre-publication as caching verifiers see it over
HTTP, retention and pruning, replicas racing each other, first start, the background loop."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import multiprocessing
import re
import threading
import urllib.request
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.clock import FrozenClock
from broker.signing import KeyRing, TokenService
from broker.signing.keyfiles import fingerprint, load_keys, write_key
from broker.signing.rotation import KeyRotator
from tests.support.servers import ThreadedServer

START = 1_800_000_000  # a multiple of PERIOD
MAX_AGE = 60
TTL = 50
LEEWAY = 10
LIFETIME = TTL + LEEWAY  # max_token_lifetime: how long a token is accepted
PERIOD = 4 * (MAX_AGE + LIFETIME)
RETENTION = LIFETIME + MAX_AGE  # how long a retired key stays published
LEAD = MAX_AGE + 120  # the rotator's lead: jwks_max_age + max(jwks_max_age, 120)
NOTICE = MAX_AGE + 5  # the least notice a key gets before it signs
STEP = 10
ROTATIONS = [START + k * PERIOD for k in (1, 2, 3)]
END = ROTATIONS[-1] + RETENTION + 3 * STEP  # the last retired key has been pruned
ISSUER = "https://broker.example"
AUDIENCE = "https://api.example"


def make_rotator(keys_dir: Path, clock: FrozenClock) -> KeyRotator:
    return KeyRotator(keys_dir, period=PERIOD, alg="ES256", clock=clock, jwks_max_age=MAX_AGE,
                      max_token_lifetime=LIFETIME)


def make_service(keys_dir: Path, clock: FrozenClock) -> tuple[KeyRing, TokenService]:
    ring = KeyRing(keys_dir, clock=clock, max_token_lifetime=LIFETIME, jwks_max_age=MAX_AGE)
    return ring, TokenService(ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=clock)


def on_disk(keys_dir: Path) -> dict[str, float]:
    return {key.kid: key.activate_at for key in load_keys(keys_dir)}


def decode(token: str, key: jwt.PyJWK, now: float) -> dict[str, Any]:
    """Signature, issuer and audience by PyJWT with the algorithm pinned; times against the simulated clock."""
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    if not claims["nbf"] - LEEWAY <= now < claims["exp"] + LEEWAY:
        raise ValueError("token outside its validity")
    return claims


def live(issued: list[tuple[float, str, str]], now: float) -> list[tuple[float, str, str]]:
    """The tokens still accepted at `now` (issued within the last token lifetime)."""
    return [entry for entry in issued if now < entry[0] + TTL + LEEWAY]


def jwks_server(ring: KeyRing) -> ThreadedServer:
    async def jwks(request: Request) -> Response:
        document = ring.jwks()
        headers = {"ETag": document.etag, "Cache-Control": document.cache_control}
        if document.not_modified(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        return Response(document.body, media_type="application/json", headers=headers)

    return ThreadedServer(Starlette(routes=[Route("/jwks.json", jwks)]))


class StrictVerifier:
    """Caches the JWKS for exactly its Cache-Control max-age on the simulated clock and never refetches on an
    unknown kid: it accepts a new key's tokens only if the key was published a full max-age before it signed."""

    def __init__(self, url: str, clock: FrozenClock) -> None:
        self.url = url
        self.clock = clock
        self.keys: dict[str, jwt.PyJWK] = {}
        self.expires = -math.inf
        self.fetches = 0

    def verify(self, token: str) -> dict[str, Any]:
        now = self.clock.now()
        if now >= self.expires:
            with urllib.request.urlopen(self.url, timeout=10) as response:
                body = response.read()
                cache = response.headers["Cache-Control"]
            match = re.fullmatch(r"public, max-age=(\d+)", cache)
            assert match, cache
            self.keys = {str(key.key_id): key for key in jwt.PyJWKSet.from_json(body.decode()).keys}
            self.expires = now + int(match.group(1))
            self.fetches += 1
        kid = jwt.get_unverified_header(token)["kid"]
        if kid not in self.keys:
            raise LookupError(f"unknown kid {kid}; cached JWKS valid until {self.expires}")
        return decode(token, self.keys[kid], now)


def test_schedule_over_three_rotations(tmp_path: Path) -> None:
    clock = FrozenClock(START + 100)
    rotator = make_rotator(tmp_path, clock)
    assert (rotator.lead, rotator.notice) == (LEAD, NOTICE)
    first = rotator.run_once()  # first start, before the key ring is built (as the app does)
    assert first is not None
    model = [(first, float(START + 100))]  # (kid, activate_at) as the rules predict, in creation order
    ring, service = make_service(tmp_path, clock)
    first_served: dict[str, float] = {}
    first_signed: dict[str, float] = {}
    pruned_at: dict[str, float] = {}
    issued: list[tuple[float, str, str]] = []  # (iat, kid, token)
    while (now := clock.now()) < END:
        created = rotator.run_once()
        due = [b for b in ROTATIONS if now == b - LEAD]
        if due:  # keys appear exactly at the expected instants, activating on the rotation instant
            assert created is not None, now
            model.append((created, float(due[0])))
        else:
            assert created is None, now

        expired = {kid for (kid, _), (_, successor) in pairwise(model)
                   if now >= successor + RETENTION}
        disk = on_disk(tmp_path)
        assert disk == {kid: activate for kid, activate in model if kid not in expired}  # pruned in the same run
        for kid, _ in model:
            if kid not in disk and kid not in pruned_at:
                pruned_at[kid] = now
                assert all(now >= iat + TTL + LEEWAY for iat, k, _ in issued if k == kid)  # all its tokens expired

        body = ring.jwks().body
        served = {key["kid"] for key in json.loads(body)["keys"]}
        assert served == set(disk)
        for kid in served:
            first_served.setdefault(kid, now)

        token = service.issue(sub="u", sid="s", scope="openid").token
        signer = jwt.get_unverified_header(token)["kid"]
        assert signer == max((k for k in model if k[1] <= now), key=lambda k: k[1])[0]
        first_signed.setdefault(signer, now)
        issued.append((now, signer, token))

        jwk_set = jwt.PyJWKSet.from_json(body.decode())
        for _, kid, old in live(issued, now):  # every live token verifies against the JWKS served now
            assert service.verify(old)["sub"] == "u"
            decode(old, jwk_set[kid], now)
        clock.advance(STEP)

    kids = [kid for kid, _ in model]
    assert [activate for _, activate in model] == [START + 100, *ROTATIONS]
    assert list(first_signed) == kids
    for kid, activate in model[1:]:
        assert first_signed[kid] == activate
        assert activate - first_served[kid] == LEAD >= MAX_AGE  # pre-published a full max-age before signing
    assert pruned_at == {kid: rotation + RETENTION for kid, rotation in zip(kids[:3], ROTATIONS, strict=True)}


def test_caching_verifiers_see_no_failure_across_three_rotations(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FrozenClock(START + 100)
    # PyJWKClient measures its cache lifespan and refresh cooldown with time.monotonic: use the simulated clock.
    simulated = SimpleNamespace(monotonic=clock.now)
    for module in ("jwt.jwks_client", "jwt.jwk_set_cache", "jwt.api_jwk"):
        monkeypatch.setattr(f"{module}.time", simulated)
    rotator = make_rotator(tmp_path, clock)
    rotator.run_once()
    ring, service = make_service(tmp_path, clock)
    failures: list[str] = []
    signers: list[str] = []
    issued: list[tuple[float, str, str]] = []
    with jwks_server(ring) as server:
        url = f"{server.url}/jwks.json"
        client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=MAX_AGE)
        fetch, client_fetches = client.fetch_data, []

        def counted_fetch() -> Any:
            client_fetches.append(clock.now())
            return fetch()

        monkeypatch.setattr(client, "fetch_data", counted_fetch)
        # One strict verifier per phase of its refresh cycle, so that some fetched just before each new key
        # was published; each starts at its own step.
        stricts = [StrictVerifier(url, clock) for _ in range(MAX_AGE // STEP)]
        step = 0
        while (now := clock.now()) < END:
            rotator.run_once()
            token = service.issue(sub="u", sid="s", scope="openid").token
            kid = jwt.get_unverified_header(token)["kid"]
            if kid not in signers:
                signers.append(kid)
            issued.append((now, kid, token))
            for _, _, old in live(issued, now):
                try:
                    decode(old, client.get_signing_key_from_jwt(old), now)
                except Exception as exc:
                    failures.append(f"{now - START}: PyJWKClient: {exc!r}")
                for index, strict in enumerate(stricts[:step + 1]):
                    try:
                        strict.verify(old)
                    except Exception as exc:
                        failures.append(f"{now - START}: strict verifier {index}: {exc!r}")
            clock.advance(STEP)
            step += 1

    assert failures == []
    assert len(signers) == 4  # three rotations happened
    assert len(client_fetches) <= math.ceil((END - START - 100) / MAX_AGE)  # cached: no refetch per new kid
    for index, strict in enumerate(stricts):  # each fetched once per max-age, never on an unknown kid
        assert strict.fetches == math.ceil((END - (START + 100 + index * STEP)) / MAX_AGE)


def test_strict_verifier_rejects_a_key_that_signs_without_notice(tmp_path: Path) -> None:
    # The control for the test above: a key signing at short notice makes the strict verifier fail.
    clock = FrozenClock(START + 100)
    make_rotator(tmp_path, clock).run_once()
    ring, service = make_service(tmp_path, clock)
    with jwks_server(ring) as server:
        strict = StrictVerifier(f"{server.url}/jwks.json", clock)
        strict.verify(service.issue(sub="u", sid="s", scope="").token)
        write_key(tmp_path, alg="ES256", activate_at=clock.now() + STEP, created_at=clock.now())
        clock.advance(STEP)
        token = service.issue(sub="u", sid="s", scope="").token
        with pytest.raises(LookupError, match="unknown kid"):
            strict.verify(token)
        clock.advance(MAX_AGE - STEP)  # its cache expires: now it knows the key
        assert strict.verify(token)["sub"] == "u"


def test_window_edges_and_missed_windows(tmp_path: Path) -> None:
    for name, offset, expected in [("early", LEAD + 1, None), ("opens", LEAD, ROTATIONS[0]),
                                   ("closes", NOTICE, ROTATIONS[0]), ("missed", NOTICE - 1, None)]:
        clock = FrozenClock(START + 100)
        rotator = make_rotator(tmp_path / name, clock)
        rotator.run_once()
        clock.set(ROTATIONS[0] - offset)
        created = rotator.run_once()
        assert (created is None) == (expected is None), name
        assert sorted(on_disk(tmp_path / name).values()) == [START + 100, *([expected] if expected else [])]
    # A missed instant is skipped, not served late: the next key is for the instant after.
    clock.set(ROTATIONS[1] - LEAD)
    assert make_rotator(tmp_path / "missed", clock).run_once() is not None
    assert sorted(on_disk(tmp_path / "missed").values()) == [START + 100, ROTATIONS[1]]


def test_first_start(tmp_path: Path) -> None:
    keys_dir = tmp_path / "missing" / "keys"
    clock = FrozenClock(ROTATIONS[0] - 39.5)  # too close to the next instant to pre-publish for it
    rotator = make_rotator(keys_dir, clock)
    kid = rotator.run_once()
    assert kid is not None and on_disk(keys_dir) == {kid: ROTATIONS[0] - 40}  # active now
    ring, _ = make_service(keys_dir, clock)
    assert ring.signing_key().kid == kid
    created = {}
    while clock.now() < ROTATIONS[1]:
        if (new := rotator.run_once()) is not None:
            created[clock.now()] = new
        clock.advance(STEP)
    assert list(created) == [ROTATIONS[1] - LEAD + 0.5]  # the first step inside the window for ROTATIONS[1]
    assert on_disk(keys_dir)[created[ROTATIONS[1] - LEAD + 0.5]] == ROTATIONS[1]

    # Only pending keys (say, staged by an operator): a key that signs now is still needed.
    pending_dir = tmp_path / "pending"
    pending = write_key(pending_dir, alg="EdDSA", activate_at=START + 1000, created_at=START)
    clock.set(START + 100)
    kid = make_rotator(pending_dir, clock).run_once()
    assert kid is not None and on_disk(pending_dir) == {kid: START + 100, pending.kid: START + 1000}


def test_constructor_rejects_period_zero_and_bad_settings(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    for period in (0, -1, 2 * (MAX_AGE + LIFETIME) - 1):
        with pytest.raises(ValueError, match="period"):
            KeyRotator(tmp_path, period=period, alg="ES256", clock=clock, jwks_max_age=MAX_AGE,
                       max_token_lifetime=LIFETIME)
    with pytest.raises(ValueError, match="algorithm"):
        KeyRotator(tmp_path, period=PERIOD, alg="HS256", clock=clock, jwks_max_age=MAX_AGE,
                   max_token_lifetime=LIFETIME)
    with pytest.raises(ValueError, match="interval"):
        asyncio.run(make_rotator(tmp_path, clock).run_forever(interval=LEAD))


def race(rotators: list[KeyRotator]) -> list[str | None]:
    barrier = threading.Barrier(len(rotators))
    results: list[str | None] = [None] * len(rotators)

    def run(index: int) -> None:
        barrier.wait(timeout=10)
        results[index] = rotators[index].run_once()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(rotators))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_replicas_in_threads_create_one_key_per_instant(tmp_path: Path) -> None:
    clock = FrozenClock(START + 100)
    replicas = [make_rotator(tmp_path, clock) for _ in range(8)]
    for instant, activation in [(START + 100, START + 100), *((b - LEAD, b) for b in ROTATIONS)]:
        clock.set(instant)
        created = [kid for kid in race(replicas) if kid is not None]
        assert len(created) == 1, instant  # one key, whatever the number of replicas
        disk = on_disk(tmp_path)
        assert disk[created[0]] == activation and len(disk) <= 2  # older keys were pruned meanwhile


def test_the_winner_rechecks_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two replicas starting on an empty directory on either side of a minute claim different markers; the
    # later one planned before the earlier one's key existed, but finds it after winning and writes nothing.
    early = make_rotator(tmp_path, FrozenClock(START + 59))
    late = make_rotator(tmp_path, FrozenClock(START + 61))
    claim = late._claim

    def slow_claim(name: str) -> bool:
        assert early.run_once() is not None
        return claim(name)

    monkeypatch.setattr(late, "_claim", slow_claim)
    assert late.run_once() is None
    assert list(on_disk(tmp_path).values()) == [START + 59]
    assert {".rotation-start-1800000000", ".rotation-start-1800000060"} <= {p.name for p in tmp_path.iterdir()}


def replica_process(keys_dir: str, now: float, barrier: Any, results: Any) -> None:
    rotator = KeyRotator(keys_dir, period=PERIOD, alg="ES256", clock=FrozenClock(now), jwks_max_age=MAX_AGE,
                         max_token_lifetime=LIFETIME)
    barrier.wait(timeout=30)
    results.put(rotator.run_once())


def test_replicas_in_processes_create_one_key(tmp_path: Path) -> None:
    make_rotator(tmp_path, FrozenClock(START + 100)).run_once()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=replica_process, args=(str(tmp_path), ROTATIONS[0] - LEAD, barrier, results))
                 for _ in range(3)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
        assert process.exitcode == 0
    assert len([kid for kid in outcomes if kid is not None]) == 1
    assert sorted(on_disk(tmp_path).values()) == [START + 100, ROTATIONS[0]]


def test_markers_are_ignored_by_loaders_and_cleaned_up(tmp_path: Path) -> None:
    clock = FrozenClock(START + 100)
    rotator = make_rotator(tmp_path, clock)
    rotator.run_once()
    clock.set(ROTATIONS[0] - LEAD)
    rotator.run_once()
    markers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".rotation-"))
    assert markers == [f".rotation-{ROTATIONS[0]}", f".rotation-start-{START + 60}"]
    assert len(load_keys(tmp_path)) == 2 and all(not name.startswith(".") for name, *_ in fingerprint(tmp_path))
    (tmp_path / ".gitignore").write_text("*\n")

    def hidden() -> set[str]:
        return {p.name for p in tmp_path.iterdir() if p.name.startswith(".")}

    clock.set(ROTATIONS[0] + 3 * PERIOD)  # the start marker (START + 60) is now over three periods old
    assert rotator.run_once() is None
    assert hidden() == {".gitignore", f".rotation-{ROTATIONS[0]}"}
    clock.advance(1)
    assert rotator.run_once() is None
    assert hidden() == {".gitignore"}


def test_run_forever_logs_failures_and_stops_when_cancelled(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "not-a-directory"
    broken.write_text("")

    def failures() -> int:
        return len([r for r in caplog.records if "rotation" in r.getMessage() and r.exc_info])

    async def scenario() -> None:
        failing = asyncio.create_task(make_rotator(broken, FrozenClock(START)).run_forever(interval=0.01))
        working = asyncio.create_task(make_rotator(tmp_path / "keys", FrozenClock(START)).run_forever(interval=1))
        for _ in range(200):
            if failures() >= 3 and any((tmp_path / "keys").glob("*.json")):  # a complete key pair
                break
            await asyncio.sleep(0.05)
        assert not failing.done() and not working.done()  # failures never end the loop
        for task in (failing, working):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.ERROR, logger="broker.signing.rotation"):
        asyncio.run(scenario())
    assert failures() >= 3  # logged each time, with the traceback
    assert len(on_disk(tmp_path / "keys")) == 1  # the working loop ran at once, and only once within its interval


def test_every_algorithm_the_broker_signs_with_rotates_on_the_schedule(tmp_path: Path) -> None:
    """The broker's own chain and the ID tokens' (EdDSA here: quick to make) each get their first key at start
    and their next key at each rotation instant, retiring only their own predecessor."""
    clock = FrozenClock(START + 100)
    rotator = KeyRotator(tmp_path, period=PERIOD, alg="ES256", clock=clock, jwks_max_age=MAX_AGE,
                         max_token_lifetime=LIFETIME, also=("EdDSA",))
    assert rotator.run_once() is not None
    ring = KeyRing(tmp_path, clock=clock, max_token_lifetime=LIFETIME, jwks_max_age=MAX_AGE, alg="ES256")
    first = {alg: ring.signing_key(alg).kid for alg in ("ES256", "EdDSA")}
    clock.advance(ROTATIONS[0] - LEAD - clock.now())
    assert rotator.run_once() is not None
    assert sorted(key.alg for key in load_keys(tmp_path)) == ["ES256", "ES256", "EdDSA", "EdDSA"]
    assert rotator.run_once() is None  # once per instant and algorithm
    clock.advance(LEAD)
    ring.reload_if_changed()
    states = {status.kid: (status.alg, status.state) for status in ring.statuses()}
    assert {first["ES256"]: ("ES256", "retired"), first["EdDSA"]: ("EdDSA", "retired")}.items() <= states.items()
    assert sorted(state for _, state in states.values()) == ["active", "active", "retired", "retired"]
    markers = {p.name for p in tmp_path.iterdir() if p.name.startswith(".rotation-")}
    bucket = START + 60  # the minute of the first start
    assert markers == {f".rotation-EdDSA-{ROTATIONS[0]}", f".rotation-{ROTATIONS[0]}",
                       f".rotation-start-EdDSA-{bucket}", f".rotation-start-{bucket}"}
