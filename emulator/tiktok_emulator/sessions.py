"""The authorization side: consent requests waiting for a person, authorization codes, and remembered grants."""

from __future__ import annotations

from dataclasses import dataclass

from tiktok_emulator import ids
from tiktok_emulator.clock import Clock


@dataclass(frozen=True)
class PendingAuthorization:
    """A validated authorize request whose consent page is on screen."""

    request_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    expires_at: float


@dataclass
class AuthorizationCode:
    code: str
    client_key: str
    redirect_uri: str
    code_challenge: str | None
    open_id: str
    scopes: tuple[str, ...]
    expires_at: float
    used: bool = False


class ConsentBook:
    def __init__(self, clock: Clock, *, code_ttl: int, consent_ttl: int) -> None:
        self._clock = clock
        self._code_ttl = code_ttl
        self._consent_ttl = consent_ttl
        self._pending: dict[str, PendingAuthorization] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        # open_id -> scopes the person granted this app; TikTok remembers the authorization per app.
        self._grants: dict[str, frozenset[str]] = {}
        self._last_user: str | None = None

    def open_request(self, *, redirect_uri: str, scopes: tuple[str, ...], state: str | None,
                     code_challenge: str | None) -> PendingAuthorization:
        now = self._clock.now()
        self._pending = {k: p for k, p in self._pending.items() if p.expires_at > now}
        pending = PendingAuthorization(ids.request_id(), redirect_uri, scopes, state, code_challenge,
                                       now + self._consent_ttl)
        self._pending[pending.request_id] = pending
        return pending

    def peek_request(self, request_id: str) -> PendingAuthorization | None:
        pending = self._pending.get(request_id)
        if pending is None or pending.expires_at <= self._clock.now():
            return None
        return pending

    def take_request(self, request_id: str) -> PendingAuthorization | None:
        """Single use: a consent form cannot be submitted twice."""
        pending = self.peek_request(request_id)
        self._pending.pop(request_id, None)
        return pending

    def issue_code(self, *, client_key: str, redirect_uri: str, code_challenge: str | None, open_id: str,
                   scopes: tuple[str, ...]) -> AuthorizationCode:
        code = AuthorizationCode(ids.authorization_code(), client_key, redirect_uri, code_challenge,
                                 open_id, scopes, self._clock.now() + self._code_ttl)
        self._codes[code.code] = code
        return code

    def find_code(self, code: str) -> AuthorizationCode | None:
        return self._codes.get(code)

    def remember(self, open_id: str, scopes: tuple[str, ...]) -> None:
        self._grants[open_id] = frozenset(scopes)
        self._last_user = open_id

    def auto_approvable(self, requested: tuple[str, ...]) -> str | None:
        """The last person who authorized this app, if they already granted every requested scope."""
        user = self._last_user
        if user is None or user not in self._grants:
            return None
        return user if set(requested) <= self._grants[user] else None

    def last_user(self) -> str | None:
        return self._last_user

    def forget(self, open_id: str) -> None:
        """The authorization is gone (revoke, webhook): the next authorize must show consent again."""
        self._grants.pop(open_id, None)
        if self._last_user == open_id:
            self._last_user = None

    def clear(self) -> None:
        self._pending.clear()
        self._codes.clear()
        self._grants.clear()
        self._last_user = None
