"""Property: TokenService.verify accepts exactly what its former PyJWT-based implementation accepted, with the
same claims, on genuine tokens and on tokens with headers, claims and text mutated, for every algorithm.

The only disagreements allowed are the documented strictness (`stricter_here`): the former implementation
accepted those tokens, the new one refuses them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import InvalidToken
from broker.signing.tokens import MAX_TOKEN_LENGTH
from tests.sdk.jws_strategies import SCOPES, claims, headers, mutated, stricter_here, unsigned_text
from tests.signing.conftest import ALGS, AUDIENCE, ISSUER, LEEWAY, TTL, Env

EXAMPLES = 250


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def reference(env: Env, token: str) -> dict[str, Any] | None:
    """TokenService.verify as it was, on PyJWT: the claims, or None where it refused the token."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    if "crit" in header or "b64" in header:
        return None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    key = env.ring.verification_key(kid)
    if key is None or header.get("alg") != key.alg:
        return None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in {"at+jwt", "application/at+jwt"}:
        return None
    try:
        decoded = jwt.PyJWS().decode_complete(token, key=key.public_key, algorithms=[key.alg])
        found = json.loads(decoded["payload"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    if not isinstance(found, dict):
        return None
    if any(name not in found for name in ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope")):
        return None
    if any(not isinstance(found[name], str) or not found[name] for name in ("sub", "jti", "sid")):
        return None
    exp, nbf, iat = found["exp"], found["nbf"], found["iat"]
    if not isinstance(found["scope"], str) or not (_number(exp) and _number(nbf) and _number(iat)):
        return None
    now = env.clock.now()
    if now >= exp + LEEWAY or nbf > now + LEEWAY or iat > now + LEEWAY or found["iss"] != ISSUER:
        return None
    aud = found["aud"]
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    try:
        return found if {AUDIENCE} & set(audiences) else None
    except TypeError:  # it hashed the members: an object in the list raised (a 500); counted as a refusal
        return None


def current(env: Env, token: str) -> dict[str, object] | None:
    try:
        return env.service.verify(token)
    except InvalidToken:
        return None


@pytest.fixture(scope="module", params=ALGS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    # One key ring per algorithm for all examples (nothing here changes it or moves its clock).
    return Env(Path(tmp_path_factory.mktemp(f"keys-{request.param}")), request.param)


def test_agrees_with_the_pyjwt_implementation(env: Env) -> None:
    outcomes: Counter[str] = Counter()
    key = env.ring.signing_key()
    signer = jwt.get_algorithm_by_name(key.alg)
    now = int(env.clock.now())

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        scope = data.draw(st.sampled_from(SCOPES), label="scope")
        header = data.draw(headers(alg=env.alg, kid=env.kid, changes=3 if scope in ("header", "everything") else 0),
                           label="header")
        payload = data.draw(claims(issuer=ISSUER, audience=AUDIENCE, now=now, ttl=TTL, leeway=LEEWAY,
                                   changes=3 if scope in ("claims", "everything") else 0), label="claims")
        text = unsigned_text(header, payload)
        genuine = f"{text}.{jwt.utils.base64url_encode(signer.sign(text.encode(), key.private_key)).decode()}"
        token = data.draw(mutated(genuine, edits=3 if scope in ("text", "everything") else 0), label="token")
        new, old = current(env, token), reference(env, token)
        if new is not None:
            assert old == new, "accepted a token the PyJWT implementation refused, or with other claims"
            outcomes["both accept"] += 1
        elif old is not None:
            assert stricter_here(token), "refused a token the PyJWT implementation accepted"
            outcomes["refused by design"] += 1
        else:
            outcomes["both refuse"] += 1

    check()
    # Both sides of the line were reached (generation is biased towards it; these bounds are loose).
    assert outcomes["both accept"] >= EXAMPLES // 20 and outcomes["both refuse"] >= EXAMPLES // 5, outcomes
