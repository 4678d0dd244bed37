"""Issued tokens: access tokens, rotating refresh-token families with a fixed deadline, and app tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tiktok_emulator import ids
from tiktok_emulator.clock import Clock


@dataclass
class AccessRecord:
    token: str
    open_id: str | None  # None for a client_credentials (app) token
    scopes: tuple[str, ...]
    expires_at: float
    family_id: str | None
    revoked: bool = False

    def active(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class RefreshFamily:
    """Every refresh token descended from one code exchange; they share the original deadline."""

    family_id: str
    open_id: str
    scopes: tuple[str, ...]
    deadline: float
    current: str
    retired: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)
    revoked: bool = False


@dataclass(frozen=True)
class TokenPair:
    open_id: str
    scopes: tuple[str, ...]
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


@dataclass(frozen=True)
class IssuedToken:
    """A read-only view for tests: what was handed out for a user and whether it still works."""

    kind: Literal["access", "refresh"]
    token: str
    scopes: tuple[str, ...]
    expires_at: float
    active: bool


class TokenStore:
    def __init__(self, clock: Clock, *, access_ttl: int, refresh_ttl: int, client_ttl: int,
                 resets_deadline: bool, old_access_survives: bool) -> None:
        self._clock = clock
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._client_ttl = client_ttl
        self._resets_deadline = resets_deadline
        self._old_access_survives = old_access_survives
        self._access: dict[str, AccessRecord] = {}
        self._families: dict[str, RefreshFamily] = {}
        self._by_refresh: dict[str, str] = {}  # current refresh token -> family id

    def issue(self, open_id: str, scopes: tuple[str, ...]) -> TokenPair:
        now = self._clock.now()  # one instant per operation, so a fresh pair reports exactly the TTLs
        family = RefreshFamily(ids.request_id(), open_id, scopes, now + self._refresh_ttl, ids.refresh_token())
        self._families[family.family_id] = family
        self._by_refresh[family.current] = family.family_id
        return self._pair(family, now)

    def refresh(self, refresh_token: str) -> TokenPair | str:
        """Rotate; the presented token dies. Returns a description of the problem instead on failure."""
        family = self._families.get(self._by_refresh.get(refresh_token, ""))
        if family is None:
            return "Refresh token is invalid or has already been used."
        now = self._clock.now()
        if family.revoked:
            return "Refresh token has been revoked."
        if now >= family.deadline:
            return "Refresh token is expired."
        del self._by_refresh[refresh_token]
        family.retired.append(refresh_token)
        family.current = ids.refresh_token()
        self._by_refresh[family.current] = family.family_id
        if self._resets_deadline:
            family.deadline = now + self._refresh_ttl
        if not self._old_access_survives:
            for token in family.access_tokens:
                self._access[token].revoked = True
        return self._pair(family, now)

    def _pair(self, family: RefreshFamily, now: float) -> TokenPair:
        record = AccessRecord(ids.access_token(), family.open_id, family.scopes, now + self._access_ttl,
                              family.family_id)
        self._access[record.token] = record
        family.access_tokens.append(record.token)
        return TokenPair(family.open_id, family.scopes, record.token, self._access_ttl, family.current,
                         max(0, int(family.deadline - now)))

    def issue_client_token(self) -> AccessRecord:
        record = AccessRecord(ids.client_token(), None, (), self._clock.now() + self._client_ttl, None)
        self._access[record.token] = record
        return record

    def access(self, token: str) -> AccessRecord | None:
        return self._access.get(token)

    def revoke_user(self, open_id: str) -> int:
        """Kill every token of this user for the app; returns how many were still alive."""
        now = self._clock.now()
        killed = 0
        for family in self._families.values():
            if family.open_id != open_id or family.revoked:
                continue
            family.revoked = True
            killed += now < family.deadline
            for token in family.access_tokens:
                record = self._access[token]
                killed += record.active(now)
                record.revoked = True
        return killed

    def revoke_client_token(self, token: str) -> None:
        self._access[token].revoked = True

    def expire(self, token: str) -> bool:
        record = self._access.get(token)
        if record is None:
            return False
        record.expires_at = min(record.expires_at, self._clock.now())
        return True

    def issued_for(self, open_id: str) -> list[IssuedToken]:
        now = self._clock.now()
        issued: list[IssuedToken] = []
        for family in self._families.values():
            if family.open_id != open_id:
                continue
            for token in family.access_tokens:
                record = self._access[token]
                issued.append(IssuedToken("access", token, record.scopes, record.expires_at, record.active(now)))
            alive = not family.revoked and now < family.deadline
            for token in family.retired:
                issued.append(IssuedToken("refresh", token, family.scopes, family.deadline, False))
            issued.append(IssuedToken("refresh", family.current, family.scopes, family.deadline, alive))
        return issued

    def clear(self) -> None:
        self._access.clear()
        self._families.clear()
        self._by_refresh.clear()
