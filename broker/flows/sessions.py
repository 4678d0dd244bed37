"""Browser sessions: the opaque cookie, its server-side record, and the broker JWT that stands for it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from broker.clock import Clock
from broker.domain import Identity, IssuedToken, ProviderTokens, Session
from broker.flows.devices import MAX_LABEL, device_label
from broker.signing.tokens import TokenService
from broker.store.local_cache import TrackedCache, disabled_cache
from broker.store.records import Records

# A cookie is "<user id>.<secret>": the user id finds the user's Redis slot, the secret proves possession.
COOKIE_PATTERN = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")
# A session's JWT is reused until this share of its lifetime has passed, then a fresh one is minted.
REUSE_FRACTION = 0.8
# Slide the idle expiry at most this often (and at least four times per idle lifetime), so most gateway checks
# are pure reads; a session served from the local cache is read from Redis again after the same interval.
TOUCH_INTERVAL = 60
TOKEN_CACHE_SIZE = 10_000


def new_user_id() -> str:
    return secrets.token_urlsafe(16)


def session_id_for(secret: str) -> str:
    """The public session id (`sid` claim, Redis key): a hash of the secret, so Redis never holds the secret."""
    digest = hashlib.sha256(secret.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:32]


@dataclass(frozen=True)
class SessionPolicy:
    absolute_ttl: int
    idle_ttl: int
    access_token_ttl: int
    leeway: int = 0
    # Every audience the broker issues to (its default and each client's): its own endpoints accept them all;
    # a resource server checks for its own.
    audiences: tuple[str, ...] = ()


@dataclass(frozen=True)
class CachedSession:
    """A live browser session as Redis last showed it, and when (our clock) that was."""

    session: Session
    read_at: float


@dataclass(frozen=True)
class AppSignIn:
    """A native app signing a user in without the browser session: which app, on which device."""

    client_id: str
    device: str  # a short label for the account page ("Photo Frame on iPhone")


@dataclass(frozen=True)
class NewSession:
    session: Session
    cookie_value: str


class SessionService:
    def __init__(self, records: Records, tokens: TokenService, policy: SessionPolicy, clock: Clock,
                 cache: TrackedCache[CachedSession] | None = None) -> None:
        self.records = records
        self.tokens = tokens
        self.policy = policy
        self.clock = clock
        # Per-process cache of each session's current JWT. Losing it costs one signature, nothing more:
        # the session itself lives in Redis.
        self._jwt_cache: OrderedDict[str, IssuedToken] = OrderedDict()
        # Per-process cache of live sessions by sid, kept true by Redis invalidations (see store/local_cache.py):
        # most gateway checks then need no Redis round trip at all.
        self._sessions: TrackedCache[CachedSession] = cache if cache is not None else disabled_cache()
        self._touch_interval = max(1, min(TOUCH_INTERVAL, policy.idle_ttl // 4))

    def new_session(self, user_id: str, identity: Identity, tokens: ProviderTokens, *, user_agent: str = "",
                    ip: str = "", app: AppSignIn | None = None) -> NewSession:
        """A session record to be saved together with the login (see Records.save_login).

        With `app`, a session of kind "app": a native app's sign-in (the TikTok SDK exchange), behind no cookie,
        the parent of the app's refresh family. It has no idle expiry of its own (the family's idle expiry
        decides: a refresh is the app's sign of life), and is labelled with the device it runs on."""
        now = self.clock.now()
        secret = secrets.token_urlsafe(32)
        expires_at = now + self.policy.absolute_ttl
        session = Session(
            sid=session_id_for(secret), user_id=user_id, created_at=now, last_seen=now,
            expires_at=expires_at, idle_expires_at=expires_at if app else now + self.policy.idle_ttl,
            scopes=tuple(sorted(tokens.scopes)), open_id=identity.subject, name=identity.display_name[:64],
            picture=identity.avatar_url, ip=ip[:64],
            user_agent=app.device[:MAX_LABEL] if app else device_label(user_agent),
            kind="app" if app else "browser", client_id=app.client_id if app else "",
        )
        return NewSession(session, f"{user_id}.{secret}")

    def app_session(self, *, user_id: str, open_id: str, name: str, tiktok_scopes: tuple[str, ...],
                    auth_time: float, app: AppSignIn) -> Session:
        """A session of kind app for a user who is already signed in elsewhere (a device they allowed on
        /device): like new_session's, for a login that happened before (`auth_time`)."""
        now = self.clock.now()
        expires_at = now + self.policy.absolute_ttl
        return Session(sid=secrets.token_urlsafe(24), user_id=user_id, created_at=now, last_seen=now,
                       expires_at=expires_at, idle_expires_at=expires_at, scopes=tuple(sorted(tiktok_scopes)),
                       open_id=open_id, name=name, user_agent=app.device[:MAX_LABEL], kind="app",
                       client_id=app.client_id, auth_time=auth_time)

    async def resolve(self, cookie_value: str | None) -> Session | None:
        """The live browser session behind a cookie, sliding its idle expiry; None for anything else."""
        if not cookie_value:
            return None
        match = COOKIE_PATTERN.fullmatch(cookie_value)
        if match is None:
            return None
        user_id, secret = match.groups()
        sid = session_id_for(secret)
        now = self.clock.now()
        hit = self._sessions.get(sid)
        # A hit is a session Redis showed us within the touch interval and that has not ended since (its key
        # would have been invalidated); its own expiry instants are checked against the clock here.
        if (hit is not None and now - hit.read_at < self._touch_interval
                and now < min(hit.session.expires_at, hit.session.idle_expires_at)
                and hmac.compare_digest(hit.session.user_id, user_id)):
            return hit.session
        return await self._read_session(user_id, sid, now)

    async def _read_session(self, user_id: str, sid: str, now: float) -> Session | None:
        cached = self._jwt_cache.get(sid)
        cached_jti = str(cached.claims["jti"]) if cached else None
        # The read depends on the session record, its user's profile (the avatar) and the denylist entry of the
        # JWT we hand out for it.
        keys = [self.records.keys.session(user_id, sid), self.records.keys.user(user_id)]
        if cached_jti:
            keys.append(self.records.keys.denied_jti(user_id, cached_jti))
        with self._sessions.reading(keys) as ticket:
            session, cached_revoked = await self.records.touch_session(
                user_id, sid, now, self.policy.idle_ttl, self._touch_interval, cached_jti=cached_jti)
            if cached_revoked:
                self.forget(sid)  # its JWT was revoked (RFC 7009): the next one is minted afresh
            # The key name already binds user id and sid; comparing again guards against a corrupted record.
            if session is None or session.kind != "browser" or not hmac.compare_digest(session.user_id, user_id):
                return None
            # Kept only if read with the JWT this process still hands out (else cached after a read with the new one).
            if not cached_revoked and self._jwt_cache.get(sid) is cached:
                self._sessions.put(ticket, sid, CachedSession(session, now))
            return session

    def access_token_for(self, session: Session) -> IssuedToken:
        """The session's broker JWT, reused until REUSE_FRACTION of its life, never past the session's end."""
        now = self.clock.now()
        cached = self._jwt_cache.get(session.sid)
        if cached is not None:
            issued_at = float(str(cached.claims["iat"]))
            if now < issued_at + (cached.expires_at - issued_at) * REUSE_FRACTION:
                self._jwt_cache.move_to_end(session.sid)
                return cached
        issued = self.mint(session)
        self._jwt_cache[session.sid] = issued
        # The cached session depended on the old JWT's denylist entry: read it again with the new one's.
        self._sessions.drop(session.sid)
        if len(self._jwt_cache) > TOKEN_CACHE_SIZE:
            self._jwt_cache.popitem(last=False)
        return issued

    def mint(self, session: Session, *, audience: str | None = None, jkt: str = "", now: float | None = None,
             jti: str | None = None) -> IssuedToken:
        """A new access JWT for a session or family, never outliving it; bound to the DPoP key `jkt` if given. The
        same `now`, `jti` and `jkt` give the same token again."""
        now = self.clock.now() if now is None else now
        extra: dict[str, object] = {"tiktok_open_id": session.open_id}
        if jkt:
            extra["cnf"] = {"jkt": jkt}  # RFC 9449 section 6.1
        if session.name:
            extra["name"] = session.name
        if session.picture:
            extra["picture"] = session.picture
        if session.client_id:
            extra["client_id"] = session.client_id
        ttl = max(1, min(self.policy.access_token_ttl, int(min(session.expires_at, session.idle_expires_at) - now)))
        scope = " ".join((*session.client_scopes, *session.scopes))
        return self.tokens.issue(sub=session.user_id, sid=session.sid, scope=scope, extra=extra, ttl=ttl,
                                 audience=audience, now=now, jti=jti)

    @property
    def tokens_leeway(self) -> int:
        return self.policy.leeway

    def verify_bearer(self, token: str, *, audience: str | None = None) -> dict[str, object]:
        """Claims of a broker access JWT presented as a bearer token, for `audience` (default: any the broker
        issues to); InvalidToken otherwise."""
        return self.tokens.verify(token, audience=audience or self.policy.audiences or None)

    def forget(self, sid: str) -> None:
        self._jwt_cache.pop(sid, None)
        self._sessions.drop(sid)

    async def end(self, session: Session) -> None:
        self.forget(session.sid)
        await self.records.delete_session(session.user_id, session.sid)
