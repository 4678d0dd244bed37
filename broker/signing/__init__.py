"""Signing keys, the broker's JWTs and the JWKS: key files, rotation rules, issue and verify."""

from broker.signing.jwks import JwksDocument, cache_control
from broker.signing.keyfiles import ALGORITHMS, SigningKey
from broker.signing.keyring import (
    KeyInfo,
    KeyRing,
    KeyState,
    KeyStatus,
    NoActiveKey,
    create_key,
    list_keys,
    prune_keys,
)
from broker.signing.tokens import ACCESS_TOKEN_TYPE, TokenService

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ALGORITHMS",
    "JwksDocument",
    "KeyInfo",
    "KeyRing",
    "KeyState",
    "KeyStatus",
    "NoActiveKey",
    "SigningKey",
    "TokenService",
    "cache_control",
    "create_key",
    "list_keys",
    "prune_keys",
]
