"""OpenID Connect ID tokens: who signed in, for which client, when, with the nonce and at_hash the client checks;
and reading one back as an `id_token_hint` (RP-initiated logout)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

from broker.clock import Clock
from broker.signing.jwt_sign import sign_jwt
from broker.signing.keyring import KeyRing
from broker_sdk.errors import TokenRejected
from broker_sdk.jws import HeaderReader, check_header, verified_claims

# OIDC Core 3.1.3.6: at_hash uses the hash of the JWS algorithm (SHA-256 for ES256/RS256); Ed25519 is paired
# with SHA-512 by the OpenID EdDSA registration.
_AT_HASH = {"ES256": hashlib.sha256, "RS256": hashlib.sha256, "EdDSA": hashlib.sha512}
DEFAULT_ALG = "RS256"  # OpenID Connect's default when a client registers none
MAX_HINT_LENGTH = 16 * 1024
ID_TOKEN_TYPES = ("jwt",)  # the typ the broker writes on ID tokens (headers are read in lower case)


def at_hash(access_token: str, alg: str) -> str:
    digest = _AT_HASH[alg](access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


class IdTokenSigner:
    def __init__(self, keyring: KeyRing, *, issuer: str, clock: Clock) -> None:
        self._keyring = keyring
        self._issuer = issuer
        self._clock = clock
        self._headers = HeaderReader()

    def issue(self, *, sub: str, client_id: str, ttl: int, auth_time: float, sid: str, nonce: str = "",
              access_token: str = "", extra: Mapping[str, object] | None = None, alg: str = DEFAULT_ALG) -> str:
        key = self._keyring.signing_key(alg)
        now = int(self._clock.now())
        claims: dict[str, object] = dict(extra or {})
        claims.update({"iss": self._issuer, "sub": sub, "aud": client_id, "exp": now + ttl, "iat": now,
                       "auth_time": int(auth_time), "sid": sid})
        if nonce:
            claims["nonce"] = nonce
        if access_token:
            claims["at_hash"] = at_hash(access_token, key.alg)
        return sign_jwt(claims, key, "JWT")

    def read_hint(self, token: str) -> dict[str, object] | None:
        """The claims of an ID token this broker signed (expired ones too: RP-Initiated Logout 1.0 section 2
        accepts them), or None. Read as the broker reads all its tokens (broker_sdk.jws: the key from the key ring
        by kid pins the algorithm, each segment in its one canonical spelling, low-S ES256 signatures only)."""
        if len(token) > MAX_HINT_LENGTH:
            return None
        try:
            header = self._headers.header(token)
            key = check_header(header, self._keyring.verification_key(header.kid) if header.kid else None,
                               ID_TOKEN_TYPES, "not an ID token")
            claims: dict[str, object] = verified_claims(token, key)
        except TokenRejected:
            return None
        if claims.get("iss") != self._issuer or "sub" not in claims or "aud" not in claims:
            return None
        return claims if "nonce" in claims or "auth_time" in claims else None  # an ID token, not an access token
