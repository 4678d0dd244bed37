"""Stateless, expiring form tokens bound to a session and a purpose (account page buttons, deletion)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TTL = 600


def derive_key(root: bytes, purpose: bytes) -> bytes:
    """A key for one job, derived from a root key, so the root key is never used for two things directly."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(root)


class FormTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, sid: str, purpose: str, now: float) -> str:
        expires = int(now) + TTL
        mac = hmac.new(self._key, f"{purpose}|{sid}|{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(struct.pack(">Q", expires) + mac).rstrip(b"=").decode()

    def check(self, token: str | None, sid: str, purpose: str, now: float) -> bool:
        if not token or len(token) > 100:
            return False
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return False
        if len(raw) != 8 + 32:
            return False
        (expires,) = struct.unpack(">Q", raw[:8])
        expected = hmac.new(self._key, f"{purpose}|{sid}|{expires}".encode(), hashlib.sha256).digest()
        return hmac.compare_digest(raw[8:], expected) and now < expires
