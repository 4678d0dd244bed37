"""What the broker publishes about itself: the JWKS, the discovery document, and its readiness."""

from __future__ import annotations

import json
from dataclasses import dataclass

from broker.errors import BrokerError, StoreUnavailable, Unavailable
from broker.flows.tokens import SESSION_GRANT
from broker.signing.jwks import JwksDocument
from broker.signing.keyring import KeyRing
from broker.store.records import Records


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


class Discovery:
    def __init__(self, *, issuer: str, keyring: KeyRing, records: Records, signing_alg: str) -> None:
        self.issuer = issuer
        self.keyring = keyring
        self.records = records
        self._configuration = json.dumps({
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [signing_alg],
            "token_endpoint": f"{issuer}/oauth/token",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "grant_types_supported": ["refresh_token", SESSION_GRANT],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope",
                                 "tiktok_open_id", "name", "picture"],
            "scopes_supported": ["openid"],
        }, separators=(",", ":")).encode()

    def jwks(self) -> JwksDocument:
        self.keyring.reload_if_changed()
        return self.keyring.jwks()

    def configuration(self) -> bytes:
        return self._configuration

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        try:
            await self.records.ping()
            checks["redis"] = "ok"
        except StoreUnavailable:
            checks["redis"] = "unreachable"
        try:
            self.keyring.reload_if_changed()
            self.keyring.signing_key()
            checks["signing_key"] = "ok"
        except BrokerError:
            checks["signing_key"] = "no active key"
        except Exception:  # a key file broken at run time must not crash the probe
            checks["signing_key"] = "unreadable"
        return Readiness(all(v == "ok" for v in checks.values()), checks)


def unavailable_for(readiness: Readiness) -> Unavailable:
    failing = ", ".join(name for name, state in readiness.checks.items() if state != "ok")
    return Unavailable(f"Not ready: {failing}.")
