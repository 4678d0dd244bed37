"""TokenService remembers the access tokens whose signature it checked: a repeat skips the signature only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.errors import InvalidToken
from broker.signing import TokenService
from broker.signing import tokens as tokens_module
from broker_sdk.jws import verified_claims
from tests.signing.conftest import AUDIENCE, ISSUER, LEEWAY, TTL, Env, rejected


def count_signature_checks(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the signature verifications TokenService asks of the SDK's JWS reader."""
    calls = [0]

    def counting(token: str, key: Any) -> dict[str, Any]:
        calls[0] += 1
        return verified_claims(token, key)

    monkeypatch.setattr(tokens_module, "verified_claims", counting)
    return calls


def test_a_repeat_skips_the_signature_but_not_the_claims(es: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_signature_checks(es, monkeypatch)
    token = es.issue()
    first = es.service.verify(token)
    for _ in range(5):
        assert es.service.verify(token) == first
    assert calls[0] == 1
    with pytest.raises(InvalidToken, match="wrong audience"):
        es.service.verify(token, audience="https://other.example")
    es.clock.advance(TTL + LEEWAY)
    rejected(es, token, "token expired")  # expiry is checked on every use, from the cache too
    assert calls[0] == 1


def test_what_a_caller_does_to_the_claims_does_not_reach_the_cache(es: Env) -> None:
    token = es.issue()
    claims = es.service.verify(token)
    claims["sub"] = "somebody else"
    claims["exp"] = 0
    assert es.service.verify(token)["sub"] == "u1"


def test_a_forged_copy_of_a_cached_token_is_checked_on_its_own(es: Env) -> None:
    token = es.issue()
    es.service.verify(token)
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    rejected(es, tampered)


def test_the_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(tmp_path, "ES256")
    env.service = TokenService(env.ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=env.clock,
                               verified_cache_size=2)
    calls = count_signature_checks(env, monkeypatch)
    tokens = [env.issue() for _ in range(3)]
    for token in tokens:
        env.service.verify(token)
    env.service.verify(tokens[0])  # evicted by the third: checked again
    env.service.verify(tokens[2])  # still remembered
    assert calls[0] == 4


def test_size_zero_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(tmp_path, "ES256")
    env.service = TokenService(env.ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=env.clock,
                               verified_cache_size=0)
    calls = count_signature_checks(env, monkeypatch)
    token = env.issue()
    env.service.verify(token)
    env.service.verify(token)
    assert calls[0] == 2
