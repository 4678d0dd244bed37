"""DPoP (RFC 9449): the proof a client sends in the `DPoP` header to show it holds the key its tokens are bound
to. The broker checks proofs with this module at its token endpoint and its own resource endpoints; a service
behind it checks a bound token with `DPoPChecker` the same way.

A proof is a JWT signed by the client's key, carrying that public key in its header (`jwk`), typed `dpop+jwt`,
with `jti` (unique), `htm` and `htu` (the request's method and URL, without query and fragment), `iat` (fresh),
`ath` (the SHA-256 of the access token, when one is sent) and, when the server asks for one, `nonce`. A bound
token names the key by its RFC 7638 thumbprint in `cnf.jkt`.

```python
from broker_sdk import BrokerVerifier
from broker_sdk.dpop import DPoPChecker

verifier, dpop = BrokerVerifier(ISSUER, audience=API), DPoPChecker()
claims = await verifier.verify(token)  # the token from `Authorization: DPoP <token>`
await dpop.check_bound(claims, token, proof=request.headers["dpop"], method=request.method,
                       url=str(request.url))  # DPoPRejected: answer 401
```
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker_sdk.errors import TokenRejected

# Asymmetric only; the curve (or key type) each one needs.
ALGORITHMS: Mapping[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None), "PS256": ("RSA", None), "EdDSA": ("OKP", "Ed25519"),
}
PROOF_TYPE = "dpop+jwt"
MAX_PROOF_LENGTH = 8 * 1024
MAX_JTI_LENGTH = 256
MIN_RSA_BITS = 2048
DEFAULT_MAX_AGE = 60  # seconds a proof stays acceptable after its iat
DEFAULT_LEEWAY = 10  # seconds a client's clock may run ahead
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638: the members a thumbprint hashes, per key type.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DPoPRejected(TokenRejected):
    """The proof (or its absence) is not acceptable; `reason` is safe to show. `nonce_needed`: the server wants
    a proof carrying its current nonce (RFC 9449 `use_dpop_nonce`)."""

    def __init__(self, reason: str, *, nonce_needed: bool = False) -> None:
        super().__init__(reason)
        self.nonce_needed = nonce_needed


@dataclass(frozen=True)
class DPoPProof:
    """A proof whose signature, type, method, URL, age and access-token hash were checked."""

    jkt: str  # the thumbprint of the key it was signed with
    jti: str
    iat: float
    nonce: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: base64url SHA-256 of the key's required members, in lexicographic order, without whitespace."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(name), str) for name in members):
        raise DPoPRejected("invalid DPoP key")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    """The `ath` of a proof sent with `token`."""
    return _b64(hashlib.sha256(token.encode("ascii")).digest())


def target_uri(url: str) -> str:
    """A URL as `htu` compares (RFC 9449 section 4.3): no query or fragment, scheme and host lower-cased, the
    default port left out, an empty path as "/"."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DPoPRejected("DPoP proof htu is not a URL") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        raise DPoPRejected("DPoP proof htu is not an http(s) URL")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def _public_key(header: Mapping[str, Any]) -> tuple[Any, str, str]:
    """(public key, algorithm, thumbprint) from a proof's header."""
    alg, jwk = header.get("alg"), header.get("jwk")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise DPoPRejected("DPoP proof algorithm not allowed")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & set(jwk):
        raise DPoPRejected("DPoP proof has no public jwk")
    kty, crv = ALGORITHMS[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        raise DPoPRejected("DPoP key does not fit its algorithm")
    modulus = jwk.get("n")
    if kty == "RSA" and (not isinstance(modulus, str) or len(modulus.rstrip("=")) * 6 < MIN_RSA_BITS - 6):
        raise DPoPRejected("DPoP key too small")  # before parsing it: a weak key is refused, not warned about
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise DPoPRejected("invalid DPoP key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise DPoPRejected("invalid DPoP key")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise DPoPRejected("DPoP key too small")
    return key, alg, jwk_thumbprint(jwk)


def check_proof(proof: str, *, method: str, url: str, now: float, access_token: str | None = None,
                max_age: float = DEFAULT_MAX_AGE, leeway: float = DEFAULT_LEEWAY) -> DPoPProof:
    """A proof for this request (`method`, `url`; `access_token` when one is presented with it), signed by the
    key in its own header; DPoPRejected otherwise. Replays (`jti`) and nonces are the caller's to check."""
    if not isinstance(proof, str) or not proof or len(proof) > MAX_PROOF_LENGTH:
        raise DPoPRejected("malformed DPoP proof")
    try:
        header = jwt.get_unverified_header(proof)
    except (jwt.PyJWTError, ValueError, RecursionError):
        raise DPoPRejected("malformed DPoP proof") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() != PROOF_TYPE:
        raise DPoPRejected("not a DPoP proof (typ must be dpop+jwt)")
    key, alg, jkt = _public_key(header)
    try:
        claims = jwt.decode(proof, key, algorithms=[alg],
                            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                     "verify_iat": False, "verify_iss": False})
    except jwt.InvalidSignatureError:
        raise DPoPRejected("bad DPoP proof signature") from None
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        raise DPoPRejected("malformed DPoP proof") from None
    jti, htm, htu, iat = (claims.get(name) for name in ("jti", "htm", "htu", "iat"))
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise DPoPRejected("DPoP proof needs a jti")
    if htm != method:
        raise DPoPRejected("DPoP proof is for another HTTP method")
    if not isinstance(htu, str) or target_uri(htu) != target_uri(url):
        raise DPoPRejected("DPoP proof is for another URL")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        raise DPoPRejected("DPoP proof needs an iat")
    if iat > now + leeway or iat < now - max_age - leeway:
        raise DPoPRejected("DPoP proof is too old or from the future")
    ath = claims.get("ath")
    if access_token is not None and ath != access_token_hash(access_token):
        raise DPoPRejected("DPoP proof is for another access token")
    nonce = claims.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise DPoPRejected("malformed DPoP nonce")
    return DPoPProof(jkt, jti, float(iat), nonce)


def bound_key(claims: Mapping[str, object]) -> str | None:
    """The thumbprint an access token is bound to (`cnf.jkt`), None for a bearer token."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None


class ReplayCache(Protocol):
    async def first_use(self, key: str, until: float) -> bool:
        """True the first time `key` is seen (and remember it until `until`), False after."""
        ...


class MemoryReplayCache:
    """Proofs seen by this process, each until it is too old to be accepted anyway. Several processes (replicas)
    each keep their own: give DPoPChecker a shared cache (Redis, say) to catch a replay sent to another one."""

    def __init__(self, size: int = 100_000, now: Callable[[], float] = time.time) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._size = size
        self._now = now

    async def first_use(self, key: str, until: float) -> bool:
        now = self._now()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = until
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


def replay_key(proof: DPoPProof) -> str:
    """What a replay cache remembers of a proof: its jti, for its key (jtis are unique per key)."""
    return hashlib.sha256(f"{proof.jkt}|{proof.jti}".encode()).hexdigest()


class DPoPChecker:
    """Checks that a DPoP-bound access token comes with a fresh proof from its key, used once."""

    def __init__(self, *, replay: ReplayCache | None = None, max_age: float = DEFAULT_MAX_AGE,
                 leeway: float = DEFAULT_LEEWAY, now: Callable[[], float] = time.time) -> None:
        self.replay = replay if replay is not None else MemoryReplayCache(now=now)
        self.max_age = max_age
        self.leeway = leeway
        self._now = now

    async def check(self, proof: str, *, method: str, url: str, access_token: str | None = None) -> DPoPProof:
        """A valid proof seen for the first time (its jti is remembered until it would be too old anyway)."""
        checked = check_proof(proof, method=method, url=url, now=self._now(), access_token=access_token,
                              max_age=self.max_age, leeway=self.leeway)
        if not await self.replay.first_use(replay_key(checked), checked.iat + self.max_age + self.leeway):
            raise DPoPRejected("DPoP proof was already used")
        return checked

    async def check_bound(self, claims: Mapping[str, object], access_token: str, *, proof: str | None,
                          method: str, url: str) -> DPoPProof:
        """For a token sent as `Authorization: DPoP`: it must be bound (`cnf.jkt`) to the key of `proof`."""
        jkt = bound_key(claims)
        if jkt is None:
            raise DPoPRejected("the token is not DPoP-bound")
        if not proof:
            raise DPoPRejected("a DPoP proof is required")
        checked = await self.check(proof, method=method, url=url, access_token=access_token)
        if checked.jkt != jkt:
            raise DPoPRejected("DPoP proof is signed by another key than the token's")
        return checked
