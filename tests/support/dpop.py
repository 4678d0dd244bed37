"""A DPoP client key (RFC 9449) that signs proofs with joserfc, a JOSE library the broker does not use, so that
the broker's checks are held to an independent implementation."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey


@dataclass
class DPoPKey:
    alg: str = "ES256"
    key: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = {"ES256": lambda: ECKey.generate_key("P-256"), "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
                        "RS256": lambda: RSAKey.generate_key(2048)}[self.alg]()

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint, as joserfc computes it."""
        return str(self.key.thumbprint())

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None,
              iat: float | None = None, jti: str | None = None, **claims: Any) -> str:
        payload: dict[str, Any] = {"jti": secrets.token_urlsafe(16) if jti is None else jti, "htm": method, "htu": url,
                                   "iat": int(time.time() if iat is None else iat), **claims}
        if access_token is not None:
            payload["ath"] = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()).rstrip(
                b"=").decode()
        if nonce is not None:
            payload["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}
        if self.alg == "EdDSA":  # joserfc calls the name deprecated (RFC 9864): PyJWT signs these
            return pyjwt.encode(payload, self.key.private_key, algorithm="EdDSA", headers=header)
        return str(jwt.encode(header, payload, self.key, algorithms=[self.alg]))
