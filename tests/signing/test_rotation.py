"""Rotation over simulated time: pre-publication, the signer switch, retirement, expiry, prune, JWKS caching."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from broker.clock import FrozenClock
from broker.errors import ConfigError
from broker.signing import (
    JwksDocument,
    KeyRing,
    NoActiveKey,
    TokenService,
    cache_control,
    create_key,
    list_keys,
    prune_keys,
)

START = 1_800_000_000.0
TTL = 300
MAX_AGE = 600
LEEWAY = 10
ISSUER = "https://broker.example"
AUDIENCE = "https://api.example"


def ring_for(keys_dir: Path, clock: FrozenClock, rescan_interval: float | None = 1.0) -> KeyRing:
    return KeyRing(keys_dir, clock=clock, max_token_lifetime=TTL, jwks_max_age=MAX_AGE,
                   rescan_interval=rescan_interval)


def served_verify(body: bytes, token: str, now: float) -> None:
    """Verify a token as an offline verifier would: with the JWKS body as served, in two libraries."""
    kid = jwt.get_unverified_header(token)["kid"]
    jwk_set = jwt.PyJWKSet.from_json(body.decode())
    key = jwk_set[kid]
    # PyJWT checks times against the host clock, which is not the simulated one: check exp/nbf by hand.
    claims = jwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer=ISSUER,
                        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    assert claims["nbf"] - LEEWAY <= now < claims["exp"] + LEEWAY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        decoded = jose_jwt.decode(token, KeySet.import_key_set(json.loads(body)), algorithms=[key.algorithm_name])
    jose_jwt.JWTClaimsRegistry(now=int(now), leeway=LEEWAY, iss={"essential": True, "value": ISSUER},
                               aud={"essential": True, "value": AUDIENCE}).validate(decoded.claims)


def test_rotation_over_time(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    first = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    assert first.activate_at == START  # nothing active: the first key signs at once
    ring, replica = ring_for(tmp_path, clock), ring_for(tmp_path, clock)
    service = TokenService(ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=clock)

    issued: list[tuple[float, str, str]] = []  # (iat, kid, token)
    first_published: dict[str, float] = {first.kid: START}
    first_signed: dict[str, float] = {}
    created: list[str] = [first.kid]
    pruned: list[str] = []
    algs = ["ES256"] * 4  # one chain: a key of another algorithm starts a chain of its own (see below)
    step = 45.0
    end = START + 4 * 3600 + MAX_AGE + 600  # the last retired key is still within its retention
    while clock.now() < end:
        now = clock.now()
        elapsed = now - START
        if algs and elapsed > 0 and elapsed % 3600 < step:  # a rotation each hour
            info = create_key(tmp_path, alg=algs.pop(0), clock=clock, jwks_max_age=MAX_AGE)
            assert info.activate_at == int(now) + MAX_AGE  # a key is active: pre-publish first
            created.append(info.kid)

        document = ring.jwks()
        assert replica.jwks().etag == document.etag  # replicas agree without talking
        served = {k["kid"] for k in json.loads(document.body)["keys"]}
        for kid in served:
            first_published.setdefault(kid, now)

        token = service.issue(sub="u", sid="s", scope="openid").token
        kid = jwt.get_unverified_header(token)["kid"]
        assert kid == replica.signing_key().kid
        if kid not in first_signed:
            first_signed[kid] = now
            if kid != first.kid:  # every cache saw the key a full max-age before it signed
                assert now - first_published[kid] >= MAX_AGE
        issued.append((now, kid, token))

        for iat, _, old in issued:
            if now - iat <= TTL:
                served_verify(document.body, old, now)
                assert service.verify(old)["sub"] == "u"

        # The running ring's view and the CLI's (which reparses the files) must agree; the CLI's is
        # taken every 16th step (12 simulated minutes) only, since parsing (validating) RSA keys is slow.
        views = [ring.statuses()]
        if int(elapsed / step) % 16 == 0:
            views.append(list_keys(tmp_path, clock=clock, max_token_lifetime=TTL, jwks_max_age=MAX_AGE))
            assert views[1] == views[0]
        statuses = {s.kid: s for s in views[0]}
        assert served == {k for k, s in statuses.items() if s.state != "expired"}
        assert [k for k, s in statuses.items() if s.state == "active"] == [kid]
        for status in statuses.values():
            if status.state == "pending":
                assert status.kid in served and status.kid not in first_signed
            if status.state == "retired":
                assert status.expires_at == status.retired_at + TTL + MAX_AGE  # type: ignore[operator]
        if len(views) == 2:
            expected = sorted(k for k, s in statuses.items() if s.state == "expired")
            removed = prune_keys(tmp_path, clock=clock, max_token_lifetime=TTL, jwks_max_age=MAX_AGE)
            assert sorted(removed) == expected
            for kid_removed in removed:
                assert not any(now - iat <= TTL for iat, k, _ in issued if k == kid_removed)
                assert not (tmp_path / f"{kid_removed}.pem").exists()
                assert not (tmp_path / f"{kid_removed}.json").exists()
            pruned.extend(removed)
            assert ring.jwks().body == document.body  # pruning expired keys changes nothing served
        clock.advance(step)

    assert len(first_signed) == 5 and list(first_signed) == created  # four rotations, in order
    assert pruned == created[:3]  # the fourth retired key is still within its retention
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{k}.{ext}" for k in created[3:] for ext in ("pem", "json"))


def test_each_algorithm_has_a_chain_of_its_own(tmp_path: Path) -> None:
    """The broker's ES256 key and the RS256 key of ID tokens sign side by side; a new key of one algorithm
    retires only its own predecessor, and the JWKS publishes both kinds with the broker's signer first."""
    clock = FrozenClock(START)
    es = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    rs = create_key(tmp_path, alg="RS256", clock=clock, jwks_max_age=MAX_AGE)
    assert rs.activate_at == START  # the first RS256 key: nothing of its kind was active
    ring = KeyRing(tmp_path, clock=clock, max_token_lifetime=TTL, jwks_max_age=MAX_AGE, alg="ES256")
    assert ring.signing_key().kid == es.kid and ring.signing_key("RS256").kid == rs.kid
    with pytest.raises(NoActiveKey):
        ring.signing_key("EdDSA")
    assert [k["kty"] for k in json.loads(ring.jwks().body)["keys"]] == ["EC", "RSA"]
    clock.advance(60)
    newer = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    assert newer.activate_at == START + 60 + MAX_AGE  # an ES256 key is active: pre-published first
    clock.advance(MAX_AGE)
    ring.reload_if_changed()
    states = {status.kid: status.state for status in ring.statuses()}
    assert states == {es.kid: "retired", newer.kid: "active", rs.kid: "active"}
    assert ring.signing_key().kid == newer.kid and ring.signing_key("RS256").kid == rs.kid
    with pytest.raises(ConfigError, match="RS256"):
        create_key(tmp_path, alg="RS256", activate_at=START - 1, clock=clock, jwks_max_age=MAX_AGE)


def test_published_set_follows_the_clock_without_file_changes(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    old = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    new = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    ring = ring_for(tmp_path, clock, rescan_interval=None)  # no rescans: only time moves

    def kids() -> list[str]:
        return [k["kid"] for k in json.loads(ring.jwks().body)["keys"]]

    assert ring.signing_key().kid == old.kid and kids() == [old.kid, new.kid]
    clock.set(new.activate_at - 1)
    assert ring.signing_key().kid == old.kid
    clock.set(new.activate_at)
    assert ring.signing_key().kid == new.kid and kids() == [new.kid, old.kid]
    clock.set(new.activate_at + TTL + MAX_AGE - 1)
    assert ring.verification_key(old.kid) is not None
    clock.set(new.activate_at + TTL + MAX_AGE)
    assert ring.verification_key(old.kid) is None and kids() == [new.kid]
    clock.set(START)  # clocks may be set back in tests: the view follows
    assert ring.signing_key().kid == old.kid


def test_no_active_key(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    ring = ring_for(tmp_path / "empty", clock)
    with pytest.raises(NoActiveKey) as caught:
        ring.signing_key()
    assert "broker keys new" in caught.value.log_detail  # the remedy, for operators
    assert "broker keys new" not in caught.value.description  # people see a generic message
    assert json.loads(ring.jwks().body) == {"keys": []}
    pending = create_key(tmp_path, activate_at=START + 100, clock=clock, jwks_max_age=MAX_AGE)
    ring = ring_for(tmp_path, clock)
    with pytest.raises(NoActiveKey):
        ring.signing_key()
    assert ring.verification_key(pending.kid) is not None  # published while pending
    clock.advance(100)
    assert ring.signing_key().kid == pending.kid


def test_create_key_activation_rules(tmp_path: Path) -> None:
    clock = FrozenClock(START + 0.5)
    first = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    assert first.activate_at == START
    second = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    assert second.activate_at == START + 1 + MAX_AGE
    third = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    assert third.activate_at == second.activate_at + 1  # never two keys at one instant
    with pytest.raises(ConfigError, match="never sign"):
        create_key(tmp_path, activate_at=START + 10, clock=clock, jwks_max_age=MAX_AGE)
    with pytest.raises(ConfigError, match="alg"):
        create_key(tmp_path, alg="HS256", clock=clock, jwks_max_age=MAX_AGE)
    later = create_key(tmp_path, activate_at=START + 9999.9, clock=clock, jwks_max_age=MAX_AGE)
    assert later.activate_at == START + 9999
    states = [(s.kid, s.state) for s in list_keys(tmp_path, clock=clock, max_token_lifetime=TTL,
                                                  jwks_max_age=MAX_AGE)]
    assert states == [(first.kid, "active"), (second.kid, "pending"), (third.kid, "pending"),
                      (later.kid, "pending")]
    clock.set(later.activate_at + TTL + MAX_AGE)
    expired = list_keys(tmp_path, clock=clock, max_token_lifetime=TTL, jwks_max_age=MAX_AGE)
    assert [s.state for s in expired] == ["expired", "expired", "expired", "active"]
    assert expired[2].retired_at == later.activate_at and expired[0].retired_at == second.activate_at
    assert expired[3].expires_at is None


def test_jwks_document_is_stable_until_the_keys_change(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    ring = ring_for(tmp_path, clock)
    first = ring.jwks()
    assert first.max_age == MAX_AGE and first.etag.startswith('"') and first.etag.endswith('"')
    clock.advance(5)
    assert ring.jwks() is first  # precomputed, not rebuilt per request
    assert ring_for(tmp_path, clock).jwks() == first  # same body and ETag on another replica
    assert ring.reload_if_changed() is False
    create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    clock.advance(1)  # past the rescan interval: picked up without a restart
    second = ring.jwks()
    assert second.body != first.body and second.etag != first.etag
    assert len(json.loads(second.body)["keys"]) == 2
    assert second.not_modified(second.etag) and second.not_modified(f'W/{second.etag}, "x"')
    assert not second.not_modified(first.etag) and not second.not_modified(None)
    assert cache_control(MAX_AGE) == f"public, max-age={MAX_AGE}" == second.cache_control
    assert JwksDocument.build([], 60).body == b'{"keys":[]}'


def test_broken_directory_on_reload_keeps_the_previous_keys(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    clock = FrozenClock(START)
    good = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    ring = ring_for(tmp_path, clock)
    before = ring.jwks()
    bad = create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    (tmp_path / f"{bad.kid}.json").write_text("{")
    with caplog.at_level(logging.ERROR):
        assert ring.reload_if_changed() is False
    assert f"{bad.kid}.json" in caplog.text and "PRIVATE" not in caplog.text
    assert ring.signing_key().kid == good.kid and ring.jwks() is before
    (tmp_path / f"{bad.kid}.json").unlink()
    (tmp_path / f"{bad.kid}.pem").unlink()
    assert ring.reload_if_changed() is True


def test_private_key_material_never_reaches_the_jwks(tmp_path: Path) -> None:
    clock = FrozenClock(START)
    for alg in ("ES256", "EdDSA", "RS256"):
        create_key(tmp_path, alg=alg, clock=clock, jwks_max_age=MAX_AGE)
    for jwk in json.loads(ring_for(tmp_path, clock).jwks().body)["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_reload_parses_only_new_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization

    clock = FrozenClock(START)
    create_key(tmp_path, alg="RS256", clock=clock, jwks_max_age=MAX_AGE)
    parsed: list[int] = []
    real = serialization.load_pem_private_key

    def counting(data: bytes, password: bytes | None) -> object:
        parsed.append(1)
        return real(data, password)

    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    ring = ring_for(tmp_path, clock)
    service = TokenService(ring, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, leeway=LEEWAY, clock=clock)
    for _ in range(3):
        service.verify(service.issue(sub="u", sid="s", scope="").token)
    assert len(parsed) == 1  # parsed once, not per token
    create_key(tmp_path, clock=clock, jwks_max_age=MAX_AGE)
    parsed.clear()
    assert ring.reload_if_changed() is True
    assert len(parsed) == 1  # only the new key
