"""The two ways verification fails: the token is bad (TokenRejected) or we cannot tell (VerifierUnavailable)."""

from __future__ import annotations


class TokenRejected(ValueError):
    """The token is not acceptable; `reason` is a short fixed phrase, safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VerifierUnavailable(RuntimeError):
    """The token could not be checked: no signing keys yet, or the introspection endpoint failed.

    Not the caller's fault: answer 503, not 401, so that clients keep their tokens and retry.
    """
