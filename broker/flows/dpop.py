"""DPoP (RFC 9449) at the broker: proofs at the token endpoint (the key a client's tokens are bound to), proofs
with bound tokens at the broker's own resource endpoints, the jti replay cache, and server nonces.

The proof itself is checked by the SDK's `broker_sdk.dpop` (the same code downstream services use). A request
without DPoP costs nothing here: a bearer token is only looked at for a `cnf` claim it must not have.

Nonces (`BROKER_DPOP_REQUIRE_NONCE`) are stateless: an HMAC of the current 5-minute window under a key derived
from the vault key, so every replica issues and accepts the same ones; a nonce stays good for one more window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Sequence

from broker.clients import Client
from broker.clock import Clock
from broker.errors import InvalidDpopProof, InvalidToken, UseDpopNonce
from broker_sdk.dpop import ALGORITHMS, DPoPProof, DPoPRejected, ReplayCache, bound_key, check_proof, replay_key

TOKEN_TYPE = "DPoP"  # noqa: S105 (the token_type of bound tokens, RFC 9449 section 5)
NONCE_WINDOW = 300
MAX_AGE = 60  # seconds a proof is good for after its iat
LEEWAY = 10  # seconds a client's clock may run ahead of ours
CHALLENGE_ALGS = " ".join(ALGORITHMS)
SUPPORTED_ALGORITHMS = tuple(ALGORITHMS)


class DPoPNonces:
    def __init__(self, key: bytes, clock: Clock) -> None:
        self._key = key
        self.clock = clock

    def _for(self, window: int) -> str:
        packed = struct.pack(">Q", window)
        mac = hmac.new(self._key, packed, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(packed + mac).rstrip(b"=").decode()

    def current(self) -> str:
        return self._for(int(self.clock.now() // NONCE_WINDOW))

    def valid(self, nonce: str | None) -> bool:
        if not nonce or len(nonce) > 64:
            return False
        window = int(self.clock.now() // NONCE_WINDOW)
        return any(hmac.compare_digest(nonce, self._for(w)) for w in (window, window - 1))


class DPoPGuard:
    def __init__(self, *, replay: ReplayCache, nonces: DPoPNonces, issuer: str, require_nonce: bool) -> None:
        self.replay = replay
        self.nonces = nonces
        self.token_url = f"{issuer}/oauth/token"
        self.require_nonce = require_nonce

    def fresh_nonce(self) -> str | None:
        """The nonce to hand out with answers to DPoP requests (RFC 9449 section 8.2), when nonces are required."""
        return self.nonces.current() if self.require_nonce else None

    def _refused(self, error: type[InvalidDpopProof], description: str, status: int) -> InvalidDpopProof:
        headers: dict[str, str] = {}
        if status == 401:  # a resource endpoint: tell the client how to authenticate
            headers["WWW-Authenticate"] = f'DPoP error="{error.code}", algs="{CHALLENGE_ALGS}"'
        if error is UseDpopNonce or self.require_nonce:
            headers["DPoP-Nonce"] = self.nonces.current()
        return error(description, status=status, headers=headers)

    async def _checked(self, proofs: Sequence[str], *, method: str, url: str, access_token: str | None,
                       status: int) -> DPoPProof:
        if len(proofs) != 1:
            raise self._refused(InvalidDpopProof, "Send exactly one DPoP header.", status)
        try:
            proof = check_proof(proofs[0], method=method, url=url, now=self.nonces.clock.now(),
                                access_token=access_token, max_age=MAX_AGE, leeway=LEEWAY)
        except DPoPRejected as rejected:
            raise self._refused(InvalidDpopProof, f"The DPoP proof was refused: {rejected.reason}.", status) from None
        if (self.require_nonce or proof.nonce is not None) and not self.nonces.valid(proof.nonce):
            raise self._refused(UseDpopNonce, "Send the DPoP proof again with the nonce in DPoP-Nonce.", status)
        if not await self.replay.first_use(replay_key(proof), proof.iat + MAX_AGE + LEEWAY):
            raise self._refused(InvalidDpopProof, "This DPoP proof was already used.", status)
        return proof

    async def token_request(self, proofs: Sequence[str], client: Client | None) -> str:
        """The key a token request proves (its thumbprint, the `jkt` its tokens get), or "" without DPoP. A
        client registered with dpop_bound_access_tokens must prove one."""
        if not proofs:
            if client is not None and client.dpop_bound:
                raise self._refused(InvalidDpopProof, "This client must send a DPoP proof.", 400)
            return ""
        return (await self._checked(proofs, method="POST", url=self.token_url, access_token=None, status=400)).jkt

    async def resource_request(self, scheme: str, token: str, claims: dict[str, object], proofs: Sequence[str], *,
                               method: str, url: str) -> None:
        """A token presented to one of the broker's resource endpoints: a bound token only with the DPoP scheme
        and a proof of its key for this request; a bearer token as it is."""
        jkt = bound_key(claims)
        if scheme == "bearer":
            if jkt is not None:  # a stolen bound token must not work as a bearer token (RFC 9449 section 7.2)
                raise self._refused(InvalidDpopProof, "This token is DPoP-bound: send it as Authorization: DPoP "
                                                      "with a proof.", 401)
            return
        if jkt is None:
            raise InvalidToken("This token is not DPoP-bound: send it as Authorization: Bearer.")
        proof = await self._checked(proofs, method=method, url=url, access_token=token, status=401)
        if not hmac.compare_digest(proof.jkt, jkt):
            raise self._refused(InvalidDpopProof, "The DPoP proof is signed by another key than the token's.", 401)
