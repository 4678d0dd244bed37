"""Three automatic key rotations on a simulated clock, tokens issued every step: BrokerVerifier never fails and
never needs a refetch for an unknown kid, because the broker pre-publishes each key a max-age ahead."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import jwt

from broker.clock import FrozenClock
from broker.signing import KeyRing, TokenService
from broker.signing.keyfiles import write_key
from broker.signing.rotation import KeyRotator
from broker_sdk import BrokerVerifier, JwksCache, TokenRejected
from tests.sdk.conftest import JwksEndpoint, start
from tests.support.servers import ThreadedServer

START = 1_800_000_000
MAX_AGE = 60
TTL = 50
LEEWAY = 10
LIFETIME = TTL + LEEWAY
PERIOD = 4 * (MAX_AGE + LIFETIME)
RETENTION = LIFETIME + MAX_AGE
STEP = 10
ROTATIONS = [START + k * PERIOD for k in (1, 2, 3)]
END = ROTATIONS[-1] + RETENTION + 3 * STEP
ISSUER = "https://broker.example"
AUDIENCE = "https://api.example"


def setup(keys_dir: Path, clock: FrozenClock) -> tuple[KeyRotator, KeyRing, TokenService]:
    rotator = KeyRotator(keys_dir, period=PERIOD, alg="ES256", clock=clock, jwks_max_age=MAX_AGE,
                         max_token_lifetime=LIFETIME)
    rotator.run_once()
    ring = KeyRing(keys_dir, clock=clock, max_token_lifetime=LIFETIME, jwks_max_age=MAX_AGE)
    return rotator, ring, TokenService(ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=clock)


def verifier(url: str, http: httpx.AsyncClient, clock: FrozenClock) -> BrokerVerifier:
    cache = JwksCache(url, http=http, clock=clock.now, min_refetch_interval=10)
    return BrokerVerifier(ISSUER, AUDIENCE, jwks=cache, leeway=LEEWAY, now=clock.now)


async def test_three_rotations_without_a_failure_or_a_refetch_per_kid(tmp_path: Path,
                                                                     serve: list[ThreadedServer]) -> None:
    clock = FrozenClock(START + 100)
    rotator, ring, service = setup(tmp_path, clock)
    endpoint = JwksEndpoint(ring)
    url = start(serve, endpoint)
    failures: list[str] = []
    signers: list[str] = []
    issued: list[tuple[float, str]] = []
    async with httpx.AsyncClient() as http:
        # One verifier per phase of the max-age cycle, each starting at its own step: some of them fetched
        # just before each new key was published, some just after.
        verifiers: list[tuple[float, BrokerVerifier]] = [
            (START + 100 + index * STEP, verifier(url, http, clock)) for index in range(MAX_AGE // STEP)]
        while (now := clock.now()) < END:
            rotator.run_once()
            token = service.issue(sub="u", sid="s", scope="openid").token
            kid = jwt.get_unverified_header(token)["kid"]
            if kid not in signers:
                signers.append(kid)
            issued.append((now, token))
            # Every token still within its lifetime must pass; those that just left it must fail as expired.
            live = [(iat, old) for iat, old in issued if now < iat + TTL + LEEWAY]
            just_expired = [(iat, old) for iat, old in issued if 0 <= now - (iat + TTL + LEEWAY) < STEP]
            for since, checker in verifiers:
                if now < since:
                    continue
                for iat, old in live:
                    try:
                        assert (await checker.verify(old))["iat"] == iat
                    except TokenRejected as exc:
                        failures.append(f"{now - START}: {exc.reason}")
                for iat, old in just_expired:
                    try:
                        await checker.verify(old)
                        failures.append(f"{now - START}: accepted a token issued at {iat - START}")
                    except TokenRejected as exc:
                        assert exc.reason == "token expired"
            clock.advance(STEP)

    assert failures == []
    assert len(signers) == 4  # three rotations happened
    for since, checker in verifiers:
        stats = checker.jwks.stats
        assert stats.failures == 0
        assert stats.unknown_kid_refetches == 0  # every key was known before it signed (bound: one per kid)
        assert stats.fetches == math.ceil((END - since) / MAX_AGE)  # one (re)validation per max-age, no more
        # A 200 only when the document changed: the first fetch, then per rotation the new key's publication,
        # its activation (the signer is listed first) and the old key's removal; every other fetch is a 304.
        assert stats.fetches - stats.not_modified <= 1 + 3 * len(ROTATIONS)
        assert stats.not_modified > 0
    assert endpoint.fetches == sum(checker.jwks.stats.fetches for _, checker in verifiers)


async def test_a_key_signing_without_notice_costs_exactly_one_refetch(tmp_path: Path,
                                                                      serve: list[ThreadedServer]) -> None:
    clock = FrozenClock(START + 100)
    _, ring, service = setup(tmp_path, clock)
    endpoint = JwksEndpoint(ring)
    url = start(serve, endpoint)
    async with httpx.AsyncClient() as http:
        checker = verifier(url, http, clock)
        await checker.verify(service.issue(sub="u", sid="s", scope="").token)
        # An operator's emergency key, signing STEP seconds after it appears: no cache could have it.
        write_key(tmp_path, alg="ES256", activate_at=clock.now() + STEP, created_at=clock.now())
        clock.advance(STEP)
        for _ in range(5):
            token = service.issue(sub="u", sid="s", scope="").token
            assert (await checker.verify(token))["sub"] == "u"
        assert checker.jwks.stats.unknown_kid_refetches == 1 and endpoint.fetches == 2
