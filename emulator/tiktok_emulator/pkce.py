"""PKCE the TikTok way: the challenge is the lowercase *hex* SHA-256 of the verifier (contract §2.4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# TikTok documents 43-128 characters, but its own Android SDK sends 32, so the server must take 32.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{32,128}")


def hex_challenge(verifier: str) -> str:
    return hashlib.sha256(verifier.encode("ascii")).hexdigest()


def base64url_challenge(verifier: str) -> str:
    """RFC 7636's encoding, which TikTok does not use; only accepted behind a flag."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_matches(verifier: str, challenge: str, *, accept_base64url: bool) -> bool:
    if not _VERIFIER.fullmatch(verifier):
        return False
    if hmac.compare_digest(hex_challenge(verifier), challenge):
        return True
    return accept_base64url and hmac.compare_digest(base64url_challenge(verifier), challenge)
