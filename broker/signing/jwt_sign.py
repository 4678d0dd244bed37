"""Signing a JWT with one of the broker's keys: the only place the broker calls PyJWT's encoder."""

from __future__ import annotations

from collections.abc import Mapping

import jwt

from broker.signing.keyfiles import SigningKey
from broker_sdk.jws import normalize_low_s


def sign_jwt(claims: Mapping[str, object], key: SigningKey, typ: str) -> str:
    """A compact JWT of these claims signed by `key`, with its kid and `typ`. ES256 signatures come out in
    low-S form, the only form verifiers accept (the high-S twin of a signature is a malleable copy)."""
    token = jwt.encode(dict(claims), key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": typ})
    return normalize_low_s(token) if key.alg == "ES256" else token
