"""Hypothesis strategies for the verifier property tests: headers and claims near valid ones, then the token's
text mutated, so that most examples sit close to the line between accepted and refused."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Characters a mutation may put in: the alphabet, the separators and what lenient decoders tolerate.
MUTATION_CHARACTERS = BASE64URL + "=.+/ \n\t%é"

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=4,
)

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def headers(draw: st.DrawFn, *, alg: str, kid: str, changes: int = 3) -> dict[str, Any]:
    """A genuine access-token header with up to `changes` members changed, removed or added."""
    near: dict[str, list[Any]] = {
        "alg": [*sorted({"ES256", "EdDSA", "RS256"} - {alg}), "none", "HS256", "PS256", alg.lower()],
        "kid": [kid, kid.lower(), "", "other"],
        "typ": ["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "secevent+jwt", ""],
        "crit": [["exp"], ["b64"], []], "b64": [True, False],
        "jku": ["http://127.0.0.1:9/jwks"], "x5u": ["http://127.0.0.1:9/c"], "jwk": [{"kty": "EC"}],
        "x5c": [["MIIB"]], "cty": ["JWT"],
    }
    members: dict[str, Any] = {"alg": alg, "kid": kid, "typ": "at+jwt"}
    # The members verifiers decide on come up more often than the ones they must ignore.
    names = [*sorted(near), "alg", "alg", "kid", "typ"]
    for _ in range(draw(st.integers(0, changes))):
        name = draw(st.sampled_from(names))
        if name in members and draw(st.booleans()):
            del members[name]
        else:
            members[name] = draw(st.one_of(st.sampled_from(near[name]), st.sampled_from(near[name]), json_values))
    return members


@st.composite
def claims(draw: st.DrawFn, *, issuer: str, audience: str, now: int, ttl: int, leeway: int,
           changes: int = 3) -> dict[str, Any]:
    """Genuine access-token claims with up to `changes` of them changed, removed or added; times are often
    within a second of where the leeway ends."""
    expiry_edge = st.sampled_from([now - leeway - 1, now - leeway, now - leeway + 1])
    future_edge = st.sampled_from([now + leeway - 1, now + leeway, now + leeway + 1])
    values: dict[str, Any] = {"iss": issuer, "sub": "user-1", "aud": audience, "exp": now + ttl, "iat": now,
                              "nbf": now, "jti": "j" * 22, "sid": "s" * 22, "scope": "openid"}
    near: dict[str, st.SearchStrategy[Any]] = {
        "iss": st.sampled_from([issuer + "/", "https://evil.example", ""]),
        "sub": st.sampled_from(["", "admin", 7]),
        "aud": st.sampled_from(["https://other.example", [audience], [audience, "x"], ["x"], [], [audience, 1]]),
        "exp": expiry_edge | st.integers(now - 100, now + 2 * ttl) | st.floats(now - 100, now + 100)
        | st.just(str(now + ttl)),
        "iat": future_edge | st.integers(now - 100, now + 100) | st.just(True),
        "nbf": future_edge | st.integers(now - 100, now + 100) | st.just(None),
        "jti": st.sampled_from(["", "j"]), "sid": st.sampled_from(["", "s"]), "scope": st.sampled_from(["", 1]),
        "name": st.text(max_size=8), "tiktok_open_id": st.text(max_size=8),
    }
    for _ in range(draw(st.integers(0, changes))):
        name = draw(st.sampled_from(sorted(near)))
        if name in values and draw(st.integers(0, 3)) == 0:
            del values[name]
        else:
            values[name] = draw(near[name] | json_values)
    return values


@st.composite
def mutated(draw: st.DrawFn, token: str, edits: int = 3) -> str:
    """The token's text with up to `edits` edits: characters replaced, inserted or deleted, spare bits set
    in a segment's last character, padding added, segments dropped, repeated or swapped, the end cut off."""
    for _ in range(draw(st.integers(0, edits))):
        edit = draw(st.sampled_from(["replace", "insert", "delete", "respell", "pad", "drop", "repeat", "swap",
                                     "cut"]))
        at = draw(st.integers(0, max(0, len(token) - 1)))
        parts = token.split(".")
        part = draw(st.integers(0, len(parts) - 1))
        if edit == "replace" and token:
            token = token[:at] + draw(st.sampled_from(MUTATION_CHARACTERS)) + token[at + 1:]
        elif edit == "insert":
            token = token[:at] + draw(st.sampled_from(MUTATION_CHARACTERS)) + token[at:]
        elif edit == "delete":
            token = token[:at] + token[at + 1:]
        elif edit == "respell" and parts[part] and parts[part][-1] in BASE64URL:
            # Lenient decoders ignore the spare low bits of a last character: same bytes, other text.
            value = BASE64URL.index(parts[part][-1]) | draw(st.sampled_from([1, 2, 3, 8]))
            parts[part] = parts[part][:-1] + BASE64URL[value]
            token = ".".join(parts)
        elif edit == "pad":
            parts[part] += draw(st.sampled_from(["=", "==", "==="]))
            token = ".".join(parts)
        elif edit == "drop" and len(parts) > 1:
            del parts[part]
            token = ".".join(parts)
        elif edit == "repeat":
            parts.insert(part, parts[part])
            token = ".".join(parts)
        elif edit == "swap" and len(parts) > 1:
            other = draw(st.integers(0, len(parts) - 1))
            parts[part], parts[other] = parts[other], parts[part]
            token = ".".join(parts)
        elif edit == "cut":
            token = token[:at]
    return token


# Which parts of a token one example changes: one part at a time reaches the line between accepted and
# refused far more often than everything at once.
SCOPES = ("header", "claims", "text", "everything")


def unsigned_text(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def stricter_here(token: str) -> bool:
    """Where the broker's verifiers refuse by design what plain PyJWT takes: padded segments (the broker never
    writes padding, and accepting it gives one token several spellings), an aud list holding non-strings, and
    the high-S twin of an ES256 signature (a malleable copy of a valid one)."""
    if "=" in token:
        return True
    parts = token.split(".")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
        signature = base64.urlsafe_b64decode(parts[2] + "==")
    except (ValueError, IndexError):
        return False
    if isinstance(header, dict) and header.get("alg") == "ES256" and len(signature) == 64 \
            and int.from_bytes(signature[32:], "big") > P256_ORDER // 2:
        return True
    aud = payload.get("aud") if isinstance(payload, dict) else None
    return isinstance(aud, list) and not all(isinstance(name, str) for name in aud)
