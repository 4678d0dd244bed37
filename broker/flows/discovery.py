"""What the broker publishes about itself: the JWKS, the discovery document, and its readiness."""

from __future__ import annotations

import json
from dataclasses import dataclass

from broker.client_entries import GRANT_DEVICE_CODE, GRANT_TOKEN_EXCHANGE, ID_TOKEN_ALGORITHMS
from broker.errors import BrokerError, StoreUnavailable, Unavailable
from broker.flows.authz_request import PROMPTS, RESPONSE_MODES
from broker.flows.dpop import SUPPORTED_ALGORITHMS as DPOP_ALGORITHMS
from broker.flows.tokens import SESSION_GRANT
from broker.signing.jwks import JwksDocument
from broker.signing.keyring import KeyRing
from broker.store.records import Records


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def provider_metadata(issuer: str, scopes: tuple[str, ...]) -> dict[str, object]:
    """What the broker offers as an OpenID Provider (OpenID Connect Discovery 1.0) and OAuth 2.0 authorization
    server (RFC 8414): exactly what works, nothing more."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "pushed_authorization_request_endpoint": f"{issuer}/oauth/par",
        "device_authorization_endpoint": f"{issuer}/oauth/device_authorization",
        "end_session_endpoint": f"{issuer}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": list(RESPONSE_MODES),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", GRANT_TOKEN_EXCHANGE,
                                  GRANT_DEVICE_CODE, SESSION_GRANT],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
        "scopes_supported": list(scopes),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGORITHMS),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "name",
                             "picture", "preferred_username", "tiktok_open_id"],
        "prompt_values_supported": list(PROMPTS),
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_pushed_authorization_requests": False,
        "claims_parameter_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }


class Discovery:
    def __init__(self, *, issuer: str, keyring: KeyRing, records: Records, scopes: tuple[str, ...],
                 algorithms: tuple[str, ...]) -> None:
        self.issuer = issuer
        self.keyring = keyring
        self.records = records
        self.algorithms = algorithms  # every algorithm the broker signs with: each needs an active key
        self._configuration = json.dumps(provider_metadata(issuer, scopes), separators=(",", ":")).encode()

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
            for alg in self.algorithms:
                self.keyring.signing_key(alg)
            checks["signing_key"] = "ok"
        except BrokerError:
            checks["signing_key"] = "no active key"
        except Exception:  # a key file broken at run time must not crash the probe
            checks["signing_key"] = "unreadable"
        return Readiness(all(v == "ok" for v in checks.values()), checks)


def unavailable_for(readiness: Readiness) -> Unavailable:
    failing = ", ".join(name for name, state in readiness.checks.items() if state != "ok")
    return Unavailable(f"Not ready: {failing}.")
