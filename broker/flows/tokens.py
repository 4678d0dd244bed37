"""The broker's own token lifecycle: refresh-token families, rotation with reuse detection, RFC 7009
revocation, RFC 7662 introspection, and access-token checks that honour every denylist."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
from dataclasses import dataclass, replace

from broker.clients import Client, ClientRegistry
from broker.clock import Clock
from broker.domain import Session, TokenPair
from broker.errors import BrokerError, InvalidClient, InvalidGrant, InvalidToken
from broker.flows.events import Events
from broker.flows.sessions import SessionService
from broker.metrics import Metrics
from broker.signing.tokens import new_jti
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
REFUSED_WRONG_KEY = "wrong_key"  # a DPoP-bound refresh token with a proof from another key
REFUSALS = frozenset({REFUSED_INVALID, REFUSED_WRONG_CLIENT, REFUSED_REUSED, REFUSED_WRONG_KEY})
# The sid of client_credentials tokens: they stand for no session (sub is the client); only denylists count.
CLIENT_SID_PREFIX = "client."
# Which denylist refused an access token, by the state Families.access_state reports.
DENYLIST_KINDS = {"jti_denied": "jti", "no_session": "sid", "sub_denied": "sub"}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPolicy:
    grace: int  # seconds a just-rotated refresh token still returns the pair it produced
    idle_ttl: int
    gateway_audience: str = ""  # the aud of tokens no client holds (session JWTs, the session-cookie grant)


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
                 metrics: Metrics | None = None, clients: ClientRegistry | None = None) -> None:
        self.families = families
        self.clients = clients or ClientRegistry()
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

    @staticmethod
    def _new_refresh_token(user_id: str, sid: str) -> str:
        return f"{REFRESH_PREFIX}.{user_id}.{sid}.{secrets.token_urlsafe(32)}"

    def _pair(self, family: Session, refresh_token: str, client: Client | None, *, jkt: str = "",
              now: float | None = None, jti: str | None = None) -> TokenPair:
        """The pair handed out, its access token bound to the DPoP key `jkt` if given; the same `now`, `jti` and
        `jkt` give the same pair again (a replay in the grace window)."""
        now = self.clock.now() if now is None else now
        issued = self.sessions.mint(family, audience=client.token_audience if client else None, jkt=jkt, now=now,
                                    jti=jti)
        expires_in = max(1, math.ceil(issued.expires_at - now))
        return TokenPair(access_token=issued.token, refresh_token=refresh_token, expires_in=expires_in,
                         scope=" ".join((*family.client_scopes, *family.scopes)))

    async def start_family(self, parent: Session, *, client: Client | None = None,
                           client_scopes: tuple[str, ...] = (), tiktok_scopes: tuple[str, ...] = (),
                           jkt: str = "") -> TokenPair:
        """A new refresh family for a signed-in user; it cannot outlive the login it came from.

        A client's family carries only the TikTok scopes it was granted (`tiktok_scopes`, of those the user granted
        TikTok); the broker's own pages (no client) carry every one. With a DPoP key (`jkt`) the access tokens are
        bound to it, and so is a public client's refresh token (a confidential client's is bound by its secret)."""
        now = self.clock.now()
        scopes = parent.scopes if client is None else tuple(s for s in parent.scopes if s in tiktok_scopes)
        family = replace(parent, sid=secrets.token_urlsafe(24), created_at=now, last_seen=now,
                         idle_expires_at=min(now + self.policy.idle_ttl, parent.expires_at), kind="refresh",
                         client_id=client.client_id if client else "", parent_sid=parent.sid,
                         client_scopes=client_scopes, scopes=scopes, auth_time=parent.signed_in_at,
                         jkt=jkt if client is not None and not client.confidential else "")
        refresh_token = self._new_refresh_token(family.user_id, family.sid)
        # The oldest families over the caps (per browser session, per user) end to make room for this one.
        for ended in await self.families.create(family, token_hash(refresh_token), now=now):
            log.info("refresh family ended: over the limit of families", extra={"user_id": family.user_id,
                                                                             "sid": ended})
            await self._revoked(family.user_id, ended, "family_limit")
        log.info("refresh family started", extra={"user_id": family.user_id, "sid": family.sid})
        return self._pair(family, refresh_token, client, jkt=jkt)

    async def refresh(self, presented: str, *, client: Client | None, jkt: str = "") -> TokenPair:
        """Rotate: a new pair; the same pair again inside the grace window; a spent token ends the family. `jkt`:
        the DPoP key the request proved (a bound family needs its own key)."""
        return (await self.refresh_family(presented, client=client, jkt=jkt))[0]

    async def refresh_family(self, presented: str, *, client: Client | None,
                             jkt: str = "") -> tuple[TokenPair, Session]:
        """As refresh, with the family as the rotation left it (an OpenID refresh signs its ID token from it)."""
        try:
            outcome, pair, family = await self._rotate(presented, client, jkt)
        except InvalidGrant as refused:
            reason = refused.log_detail if refused.log_detail in REFUSALS else REFUSED_INVALID
            self.metrics.refresh_grants.labels(reason).inc()
            raise
        except BrokerError:
            self.metrics.refresh_grants.labels("error").inc()  # Redis away, most likely
            raise
        self.metrics.refresh_grants.labels(outcome).inc()
        return pair, family

    async def _rotate(self, presented: str, client: Client | None, jkt: str) -> tuple[str, TokenPair, Session]:
        parsed = parse_refresh_token(presented)
        if parsed is None:
            raise InvalidGrant("The refresh token is invalid or expired.", log_detail=REFUSED_INVALID)
        # Everything the answer needs but the family is made before the one round trip: the successor, the id and
        # instant of its access token (sealed into the grace copy, so that a replay signs the very same pair). The
        # script refuses a family bound to another DPoP key before it rotates anything.
        successor = self._new_refresh_token(parsed.user_id, parsed.sid)
        rotation = await self.families.rotate(
            parsed.user_id, parsed.sid, parsed.hash, successor, token_hash(successor), jti=new_jti(),
            client_id=client.client_id if client else "", jkt=jkt, now=self.clock.now(), grace=self.policy.grace,
            idle_ttl=self.policy.idle_ttl)
        family = rotation.family
        if rotation.outcome in ("rotated", "replayed") and family is not None:
            # Parallel tabs presenting the same token inside the grace window get the same answer.
            pair = rotation.legacy_pair or self._pair(family, rotation.refresh_token, client, jkt=jkt,
                                                      now=rotation.rotated_at, jti=rotation.jti)
            return rotation.outcome, pair, family
        if rotation.outcome == "wrong_client":
            raise InvalidGrant("The refresh token was issued to another client.", log_detail=REFUSED_WRONG_CLIENT)
        if rotation.outcome == "wrong_key":
            raise InvalidGrant("The refresh token is bound to another DPoP key.", log_detail=REFUSED_WRONG_KEY)
        if rotation.outcome == "reused":
            log.warning("refresh token reused after its grace window: family revoked",
                        extra={"user_id": parsed.user_id, "sid": parsed.sid})
            await self._revoked(parsed.user_id, parsed.sid, "refresh_token_reused")
            raise InvalidGrant("The refresh token was already used; the session has been ended.",
                               log_detail=REFUSED_REUSED)
        raise InvalidGrant("The refresh token is invalid or expired.", log_detail=REFUSED_INVALID)

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

    async def check_access_token(self, token: str, *, audience: str | None = None) -> dict[str, object]:
        """Claims of a valid broker access JWT whose session lives and that no denylist names.

        `audience`: the one the token must name (/auth/verify: the gateway's); by default any the broker issues."""
        claims = self.sessions.verify_bearer(token, audience=audience)
        sub, sid, jti = str(claims["sub"]), str(claims["sid"]), str(claims["jti"])
        name = f"{sub}/{sid}/{jti}"
        if self._clean_tokens.get(name):
            return claims
        with self._clean_tokens.reading(self.families.access_state_keys(sub, sid, jti)) as ticket:
            state = await self.families.access_state(sub, sid, jti,
                                                     needs_session=not sid.startswith(CLIENT_SID_PREFIX))
            if state != "ok":
                self.metrics.denylist_hits.labels(DENYLIST_KINDS.get(state, state)).inc()
                raise InvalidToken("The token has been revoked.", log_detail=state)
            self._clean_tokens.put(ticket, name, True)
        return claims

    async def session_for(self, claims: dict[str, object]) -> Session | None:
        """The session or family an access token stands for, if it still exists."""
        loaded = await self.families.load(str(claims["sub"]), str(claims["sid"]))
        return loaded[0] if loaded else None

    def _family_audience(self, family: Session) -> str:
        """The audience of the access tokens a family produces."""
        if not family.client_id:
            return self.policy.gateway_audience
        client = self.clients.get(family.client_id)
        return client.token_audience if client else ""

    @staticmethod
    def _shown_to(caller: Client, client_id: object, audience: object) -> bool:
        """Introspection answers only for the caller's own tokens and for tokens meant for the caller's audience."""
        if client_id == caller.client_id:
            return True
        wanted = caller.token_audience
        return audience == wanted or (isinstance(audience, list) and wanted in audience)

    async def introspect(self, token: str, *, caller: Client) -> dict[str, object]:
        """RFC 7662: {"active": false} for anything not currently valid, or not the caller's to see (RFC 7662
        section 4: a client learns nothing of tokens that are neither its own nor meant for its audience)."""
        parsed = parse_refresh_token(token)
        if parsed is not None:
            loaded = await self.families.load(parsed.user_id, parsed.sid)
            if loaded is None or loaded[1].get("rt") != parsed.hash:
                return {"active": False}
            family = loaded[0]
            if self.clock.now() >= min(family.expires_at, family.idle_expires_at):
                return {"active": False}
            if not self._shown_to(caller, family.client_id, self._family_audience(family)):
                return {"active": False}
            answer: dict[str, object] = {"active": True, "token_type": "refresh_token", "sub": family.user_id,
                                         "sid": family.sid, "scope": " ".join((*family.client_scopes,
                                                                                *family.scopes)),
                                         "exp": int(family.expires_at), "iat": int(family.created_at)}
            if family.client_id:
                answer["client_id"] = family.client_id
            return answer
        try:
            claims = await self.check_access_token(token)
        except (InvalidToken, InvalidClient):
            return {"active": False}
        if not self._shown_to(caller, claims.get("client_id"), claims.get("aud")):
            return {"active": False}
        return {"active": True, "token_type": "access_token", **claims}
