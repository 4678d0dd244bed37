"""OpenID Back-Channel Logout 1.0 logout tokens: signed like the client's ID tokens, typ logout+jwt, no nonce."""

from __future__ import annotations

from broker.signing.jwt_sign import sign_jwt
from broker.signing.keyring import KeyRing

LOGOUT_TOKEN_TYPE = "logout+jwt"  # noqa: S105 (a media type, not a password)
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LIFETIME = 120  # seconds a receiver accepts the token for


class LogoutTokenSigner:
    def __init__(self, keyring: KeyRing, *, issuer: str) -> None:
        self._keyring = keyring
        self._issuer = issuer

    def sign(self, *, client_id: str, sub: str, sid: str, jti: str, iat: float, alg: str) -> str:
        """A logout token for one client about one session (`sid` as in its ID tokens) of user `sub`."""
        key = self._keyring.signing_key(alg)
        claims: dict[str, object] = {"iss": self._issuer, "aud": client_id, "iat": int(iat),
                                     "exp": int(iat) + LIFETIME, "jti": jti, "sub": sub, "sid": sid,
                                     "events": {BACKCHANNEL_EVENT: {}}}
        return sign_jwt(claims, key, LOGOUT_TOKEN_TYPE)
