"""The broker's own token lifecycle: refresh-token families, rotation with reuse detection, RFC 7009
revocation, RFC 7662 introspection, and access-token checks that honour every denylist."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass, replace

from broker.clients import Client
from broker.clock import Clock
from broker.domain import Session, TokenPair
from broker.errors import BrokerError, InvalidClient, InvalidGrant, InvalidToken
from broker.flows.events import Events
from broker.flows.sessions import SessionService
from broker.metrics import Metrics
from broker.store.families import Families
from broker.store.local_cache import TrackedCache, disabled_cache

log = logging.getLogger("broker.tokens")

REFRESH_PREFIX = "brt1"
# How a signed-in browser page obtains its first token pair: POST /oauth/token from a trusted origin, with the cookie.
SESSION_GRANT = "urn:tiktok-broker:params:oauth:grant-type:session-cookie"
# brt1.<user id>.<family id>.<secret>: the user id finds the Redis slot, the family id the record.
REFRESH_PATTERN = re.compile(r"^brt1\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{43})$")
# Why a refresh was refused: carried as the InvalidGrant's log_detail, counted as the metric's outcome.
REFUSED_INVALID, REFUSED_WRONG_CLIENT, REFUSED_REUSED = "invalid", "wrong_client", "reused"
REFUSALS = frozenset({REFUSED_INVALID, REFUSED_WRONG_CLIENT, REFUSED_REUSED})
# Which denylist refused an access token, by the state Families.access_state reports.
DENYLIST_KINDS = {"jti_denied": "jti", "no_session": "sid", "sub_denied": "sub"}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPolicy:
    grace: int  # seconds a just-rotated refresh token still returns the pair it produced
    idle_ttl: int


@dataclass(frozen=True)
class RefreshToken:
    user_id: str
    sid: str
    hash: str


def parse_refresh_token(token: str) -> RefreshToken | None:
    match = REFRESH_PATTERN.fullmatch(token)
    if match is None:
        return None
    return RefreshToken(match.group(1), match.group(2), token_hash(token))


class TokenFlow:
    def __init__(self, *, families: Families, sessions: SessionService, policy: TokenPolicy, clock: Clock,
                 events: Events | None = None, access_cache: TrackedCache[bool] | None = None,
                 metrics: Metrics | None = None) -> None:
        self.families = families
        self.sessions = sessions
        self.policy = policy
        self.clock = clock
        # Access tokens found clean of every denylist, kept only while Redis reports no write to what was read.
        self._clean_tokens: TrackedCache[bool] = access_cache if access_cache is not None else disabled_cache()
        self.events = events
        self.metrics = metrics or Metrics()

    async def _revoked(self, user_id: str, sid: str, reason: str) -> None:
        self.sessions.forget(sid)
        self.metrics.sessions_ended.labels(reason).inc()
        if self.events is not None:
            await self.events.emit("session.revoked", sub=user_id, sid=sid, data={"reason": reason})

    def _new_refresh_token(self, session: Session) -> str:
        return f"{REFRESH_PREFIX}.{session.user_id}.{session.sid}.{secrets.token_urlsafe(32)}"

    def _pair(self, family: Session, refresh_token: str, audience: str | None) -> TokenPair:
        issued = self.sessions.mint(family, audience=audience)
        expires_in = max(1, math.ceil(issued.expires_at - self.clock.now()))
        return TokenPair(access_token=issued.token, refresh_token=refresh_token, expires_in=expires_in,
                         scope=" ".join((*family.client_scopes, *family.scopes)))

    async def start_family(self, parent: Session, *, client: Client | None = None,
                           client_scopes: tuple[str, ...] = ()) -> TokenPair:
        """A new refresh family for a signed-in user; it cannot outlive the login it came from."""
        now = self.clock.now()
        family = replace(parent, sid=secrets.token_urlsafe(24), created_at=now, last_seen=now,
                         idle_expires_at=min(now + self.policy.idle_ttl, parent.expires_at), kind="refresh",
                         client_id=client.client_id if client else "", parent_sid=parent.sid,
                         client_scopes=client_scopes)
        refresh_token = self._new_refresh_token(family)
        # The oldest families over the caps (per browser session, per user) end to make room for this one.
        for ended in await self.families.create(family, token_hash(refresh_token), now=now):
            log.info("refresh family ended: over the limit of families", extra={"user_id": family.user_id,
                                                                             "sid": ended})
            await self._revoked(family.user_id, ended, "family_limit")
        log.info("refresh family started", extra={"user_id": family.user_id, "sid": family.sid})
        return self._pair(family, refresh_token, client.audience if client else None)

    async def refresh(self, presented: str, *, client: Client | None) -> TokenPair:
        """Rotate: a new pair; the same pair again inside the grace window; a spent token ends the family."""
        try:
            outcome, pair = await self._rotate(presented, client)
        except InvalidGrant as refused:
            reason = refused.log_detail if refused.log_detail in REFUSALS else REFUSED_INVALID
            self.metrics.refresh_grants.labels(reason).inc()
            raise
        except BrokerError:
            self.metrics.refresh_grants.labels("error").inc()  # Redis away, most likely
            raise
        self.metrics.refresh_grants.labels(outcome).inc()
        return pair

    async def _rotate(self, presented: str, client: Client | None) -> tuple[str, TokenPair]:
        parsed = parse_refresh_token(presented)
        loaded = await self.families.load(parsed.user_id, parsed.sid) if parsed else None
        if parsed is None or loaded is None or loaded[0].kind != "refresh":
            raise InvalidGrant("The refresh token is invalid or expired.", log_detail=REFUSED_INVALID)
        family, _ = loaded
        self._check_client(family, client)
        successor = self._new_refresh_token(family)
        pair = self._pair(family, successor, client.audience if client else None)
        status, replayed = await self.families.rotate(
            family, parsed.hash, token_hash(successor), pair, now=self.clock.now(), grace=self.policy.grace,
            idle_ttl=self.policy.idle_ttl)
        if status == "rotated":
            return "rotated", pair
        if status == "replayed" and replayed is not None:
            return "replayed", replayed  # parallel tabs presenting the same token get the same answer
        if status == "reused":
            log.warning("refresh token reused after its grace window: family revoked",
                        extra={"user_id": family.user_id, "sid": family.sid})
            await self._revoked(family.user_id, family.sid, "refresh_token_reused")
            raise InvalidGrant("The refresh token was already used; the session has been ended.",
                               log_detail=REFUSED_REUSED)
        raise InvalidGrant("The refresh token is invalid or expired.", log_detail=REFUSED_INVALID)

    @staticmethod
    def _check_client(family: Session, client: Client | None) -> None:
        if family.client_id and (client is None or client.client_id != family.client_id):
            raise InvalidGrant("The refresh token was issued to another client.", log_detail=REFUSED_WRONG_CLIENT)
        if not family.client_id and client is not None:
            raise InvalidGrant("The refresh token was issued to another client.", log_detail=REFUSED_WRONG_CLIENT)

    async def revoke(self, token: str, *, client: Client | None) -> None:
        """RFC 7009: end a refresh family, or denylist an access JWT until it expires. Unknown tokens: no-op."""
        parsed = parse_refresh_token(token)
        if parsed is not None:
            loaded = await self.families.load(parsed.user_id, parsed.sid)
            if loaded is None or not await self.families.was_issued(parsed.user_id, parsed.sid, parsed.hash):
                return
            if not self._owned_by(loaded[0].client_id, client):
                log.info("revocation by another client ignored", extra={"sid": parsed.sid})
                return
            if await self.families.end(parsed.user_id, parsed.sid):
                await self._revoked(parsed.user_id, parsed.sid, "token_revoked")
            return
        try:
            claims = self.sessions.verify_bearer(token)
        except InvalidToken:
            return  # garbage, forged or already expired: nothing left to revoke
        if not self._owned_by(str(claims.get("client_id", "")), client):
            return
        await self.families.deny_jti(str(claims["sub"]), str(claims["jti"]),
                                     float(str(claims["exp"])) + self.sessions.tokens_leeway)

    @staticmethod
    def _owned_by(owner: str, client: Client | None) -> bool:
        return not owner or (client is not None and client.client_id == owner)

    async def check_access_token(self, token: str) -> dict[str, object]:
        """Claims of a valid broker access JWT whose session lives and that no denylist names."""
        claims = self.sessions.verify_bearer(token)
        sub, sid, jti = str(claims["sub"]), str(claims["sid"]), str(claims["jti"])
        name = f"{sub}/{sid}/{jti}"
        if self._clean_tokens.get(name):
            return claims
        with self._clean_tokens.reading(self.families.access_state_keys(sub, sid, jti)) as ticket:
            state = await self.families.access_state(sub, sid, jti)
            if state != "ok":
                self.metrics.denylist_hits.labels(DENYLIST_KINDS.get(state, state)).inc()
                raise InvalidToken("The token has been revoked.", log_detail=state)
            self._clean_tokens.put(ticket, name, True)
        return claims

    async def session_for(self, claims: dict[str, object]) -> Session | None:
        """The session or family an access token stands for, if it still exists."""
        loaded = await self.families.load(str(claims["sub"]), str(claims["sid"]))
        return loaded[0] if loaded else None

    async def introspect(self, token: str) -> dict[str, object]:
        """RFC 7662: {"active": false} for anything not currently valid, else what the token stands for."""
        parsed = parse_refresh_token(token)
        if parsed is not None:
            loaded = await self.families.load(parsed.user_id, parsed.sid)
            if loaded is None or loaded[1].get("rt") != parsed.hash:
                return {"active": False}
            family = loaded[0]
            if self.clock.now() >= min(family.expires_at, family.idle_expires_at):
                return {"active": False}
            answer: dict[str, object] = {"active": True, "token_type": "refresh_token", "sub": family.user_id,
                                         "sid": family.sid, "scope": " ".join(family.scopes),
                                         "exp": int(family.expires_at), "iat": int(family.created_at)}
            if family.client_id:
                answer["client_id"] = family.client_id
            return answer
        try:
            claims = await self.check_access_token(token)
        except (InvalidToken, InvalidClient):
            return {"active": False}
        return {"active": True, "token_type": "access_token", **claims}
