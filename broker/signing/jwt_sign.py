"""Signing a JWT with one of the broker's keys: the only place the broker calls PyJWT's encoder."""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm
from jwt.api_jws import PyJWS

from broker.signing.keyfiles import SigningKey
from broker_sdk.jws import P256_HALF_ORDER, P256_ORDER


class _DeterministicLowS(ECAlgorithm):
    """ES256 as RFC 6979 signs it (the nonce derived from the key and the message, so the same claims give the
    same token: a refresh replayed inside its grace window is answered with the very pair it produced), in the
    low-S form, the only form verifiers accept (the high-S twin of a signature is a malleable copy)."""

    def sign(self, msg: bytes, key: EllipticCurvePrivateKey) -> bytes:
        r, s = decode_dss_signature(key.sign(msg, ECDSA(self.hash_alg(), deterministic_signing=True)))
        if s > P256_HALF_ORDER:
            s = P256_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


# PyJWT's JWS encoder with ES256 replaced; EdDSA and RS256 (PKCS#1 v1.5) are deterministic as they are.
_JWS = PyJWS()
_JWS.unregister_algorithm("ES256")
_JWS.register_algorithm("ES256", _DeterministicLowS(ECAlgorithm.SHA256))


def sign_jwt(claims: Mapping[str, object], key: SigningKey, typ: str) -> str:
    """A compact JWT of these claims signed by `key`, with its kid and `typ`; the same claims and key give the
    same token."""
    payload = json.dumps(dict(claims), separators=(",", ":")).encode()  # as PyJWT's jwt.encode serializes them
    return _JWS.encode(payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": typ})
