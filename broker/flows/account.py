"""Ending things: logout (one session or everywhere), ending a session from the account page, revoking a
connected app, deleting an account, and TikTok's deauthorization. Each ends sessions in one atomic step, then
tells TikTok, the downstream services and the apps that held them (back-channel logout); TikTok failing never
leaves the local side half done. Also: which bearer tokens hold these powers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from broker.client_entries import ACCOUNT_SCOPE
from broker.clients import ClientRegistry
from broker.clock import Clock
from broker.domain import Session
from broker.flows.consent import ConnectedApp, ConsentFlow
from broker.flows.revocations import TikTokRevoker
from broker.flows.sessions import SessionService
from broker.metrics import Metrics
from broker.store.accounts import Accounts
from broker.store.events import Logout
from broker.store.families import Families
from broker.store.records import Records
from broker.store.tiktok_tokens import TikTokTokenStore

log = logging.getLogger("broker.account")

# authorization.removed reasons (TikTok's webhook documentation).
DEAUTHORIZATION_REASONS = {0: "unknown", 1: "user_disconnected", 2: "account_deleted", 3: "age_changed",
                           4: "account_banned", 5: "developer_revoked"}


class EventSink(Protocol):
    async def emit(self, event_type: str, *, sub: str, sid: str | None = None,
                   data: Mapping[str, object] | None = None, logouts: Sequence[Logout] = ()) -> str: ...


@dataclass(frozen=True)
class LogoutResult:
    ended: list[str]
    tiktok: str  # "revoked" | "queued" | "kept" (other sessions remain) | "none" (no grant stored)


@dataclass(frozen=True)
class Receipt:
    receipt_id: str
    deleted_at: str
    user_id: str
    deleted: dict[str, int | bool] = field(default_factory=dict)
    tiktok: str = "none"


@dataclass(frozen=True)
class SessionView:
    session: Session
    current: bool


@dataclass(frozen=True)
class AccountPowers:
    """Who may end the user's other sessions, log out everywhere and delete the account with a bearer token."""

    clients: ClientRegistry
    gateway_audience: str

    def allow(self, claims: Mapping[str, object]) -> bool:
        """The session JWT the gateway hands the company's services (no client, the gateway audience), or a
        first-party app's token carrying the `account` scope. A third-party app's token never."""
        client_id = claims.get("client_id")
        if not client_id:
            aud = claims.get("aud")
            return aud == self.gateway_audience or (isinstance(aud, list) and self.gateway_audience in aud)
        client = self.clients.get(str(client_id))
        return client is not None and client.first_party and ACCOUNT_SCOPE in str(claims.get("scope", "")).split()


class AccountFlow:
    def __init__(self, *, accounts: Accounts, records: Records, families: Families, tiktok: TikTokTokenStore,
                 revoker: TikTokRevoker, sessions: SessionService, events: EventSink, metrics: Metrics,
                 clock: Clock, deny_for: int, consent: ConsentFlow, powers: AccountPowers) -> None:
        self.consent = consent
        self.powers = powers
        self.clients = powers.clients
        self.accounts = accounts
        self.records = records
        self.families = families
        self.tiktok = tiktok
        self.revoker = revoker
        self.sessions = sessions
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.deny_for = deny_for

    def _logouts(self, owners: Mapping[str, str], sids: Sequence[str]) -> list[Logout]:
        """The back-channel logouts due for these ended sessions: one per app family whose client has a URI."""
        logouts = []
        for sid in sids:
            client = self.clients.get(owners.get(sid, ""))
            if client is not None and client.backchannel_logout_uri:
                logouts.append(Logout(client.client_id, client.backchannel_logout_uri, sid, client.id_token_alg))
        return logouts

    async def _ended(self, user_id: str, sids: list[str], cause: str, owners: Mapping[str, str]) -> None:
        """Tell everyone about sessions just ended: caches, the events stream and webhooks, and the apps that held
        them (`owners`: sid -> client id, read before they ended)."""
        for sid in sids:
            self.sessions.forget(sid)
            await self.events.emit("session.revoked", sub=user_id, sid=sid, data={"reason": cause},
                                   logouts=self._logouts(owners, [sid]))
        self.metrics.sessions_ended.labels(cause).inc(len(sids))

    async def _unlink_tiktok(self, user_id: str, reason: str) -> str:
        """Drop the stored grant (locally first, so nothing can use it), then revoke it at TikTok."""
        stored = await self.tiktok.get(user_id)
        if stored is None:
            return "none"
        if not await self.tiktok.mark_link_broken(user_id, reason, self.clock.now(), expected_version=stored.version):
            return "kept"  # a newer login stored a fresh grant meanwhile: that one stays
        return await self.revoker.revoke(stored.tokens)

    async def _signed_in_by(self, family: Session) -> str:
        """What to end to end an app's family: the native app's session it hangs off when it has one (the two
        stand or fall together: the session is there only for its family), else the family itself."""
        if family.kind == "refresh" and family.parent_sid:
            parent = await self.families.load(family.user_id, family.parent_sid)
            if parent is not None and parent[0].kind == "app":
                return family.parent_sid
        return family.sid

    async def logout(self, session: Session, *, everywhere: bool = False, unlink: bool = True) -> LogoutResult:
        """End the session (and the families started from it) or every session. `unlink` False: never drop the
        TikTok grant (an app ending its own family has no say over the user's TikTok link)."""
        user_id = session.user_id
        owners = await self.consent.store.families_by_client(user_id)
        ended = await self.accounts.end_sessions(user_id, None if everywhere else await self._signed_in_by(session))
        await self._ended(user_id, ended, "logout_everywhere" if everywhere else "logout", owners)
        remaining = await self.accounts.live_session_ids(user_id, self.clock.now())
        keep = (remaining and not everywhere) or not unlink
        tiktok = "kept" if keep else await self._unlink_tiktok(user_id, "logged_out")
        await self.events.emit("user.logged_out", sub=user_id, sid=session.sid,
                               data={"everywhere": everywhere, "sessions_ended": len(ended)})
        return LogoutResult(ended, tiktok)

    async def end_session(self, user_id: str, sid: str) -> bool:
        """End one of the user's own sessions (the account page's button); False if it is not theirs or gone."""
        owners = await self.consent.store.families_by_client(user_id)
        ended = await self.accounts.end_sessions(user_id, sid)
        await self._ended(user_id, ended, "ended_by_user", owners)
        return bool(ended)

    async def disconnect_app(self, user_id: str, client_id: str) -> list[str]:
        """Revoke a connected app: forget the consent, end its refresh families at once; the sids ended."""
        owners = await self.consent.store.families_by_client(user_id)
        removed = await self.consent.store.remove(user_id, client_id)
        ended: list[str] = []
        for sid in (sid for sid, owner in owners.items() if owner == client_id):
            family = await self.families.load(user_id, sid)
            if family is not None:
                ended += await self.accounts.end_sessions(user_id, await self._signed_in_by(family[0]))
        await self._ended(user_id, ended, "app_revoked", owners)
        if removed or ended:
            await self.events.emit("app.disconnected", sub=user_id, data={"client_id": client_id,
                                                                          "sessions_ended": len(ended)})
        return ended

    async def connected_apps(self, user_id: str) -> list[ConnectedApp]:
        last_seen: dict[str, float] = {}
        owners = await self.consent.store.families_by_client(user_id)
        for sid, client_id in owners.items():
            loaded = await self.families.load(user_id, sid)
            if loaded is not None:
                last_seen[client_id] = max(last_seen.get(client_id, 0.0), loaded[0].last_seen)
        return await self.consent.connected_apps(user_id, last_seen)

    async def sessions_of(self, current: Session) -> list[SessionView]:
        """Where the user is signed in: browser sessions, apps' refresh families, and native apps' sign-ins, each
        of these one row with its family folded in (last seen when the app last refreshed)."""
        found: list[Session] = []
        for sid in await self.accounts.live_session_ids(current.user_id, self.clock.now()):
            loaded = await self.families.load(current.user_id, sid)
            if loaded is not None:
                found.append(loaded[0])
        apps = {session.sid for session in found if session.kind == "app"}
        last_use: dict[str, float] = {}
        for session in found:
            if session.kind == "refresh" and session.parent_sid in apps:
                last_use[session.parent_sid] = max(last_use.get(session.parent_sid, 0.0), session.last_seen)
        views: list[SessionView] = []
        for session in found:
            if session.kind == "refresh" and session.parent_sid in apps:
                continue
            if session.kind == "app":
                if session.sid not in last_use:
                    continue  # its family ended (revoked, idle): nothing is signed in there any more
                session = replace(session, last_seen=last_use[session.sid])
            views.append(SessionView(session, session.sid == current.sid))
        return sorted(views, key=lambda view: (not view.current, -view.session.last_seen))

    async def profile(self, user_id: str) -> dict[str, str]:
        return await self.records.get_user(user_id)

    async def delete(self, user_id: str) -> Receipt:
        """Delete everything of the user at once, then revoke at TikTok (or queue it) and tell downstream."""
        now = self.clock.now()
        profile = await self.records.get_user(user_id)
        stored = await self.tiktok.get(user_id)
        sids = await self.accounts.live_session_ids(user_id, 0)
        owners = await self.consent.store.families_by_client(user_id)
        deleted = await self.accounts.delete_user(user_id, profile.get("open_id", ""), deny_for=self.deny_for,
                                                  now=now, expiry_index=self.tiktok.index_key())
        for sid in sids:
            self.sessions.forget(sid)
        tiktok = await self.revoker.revoke(stored.tokens) if stored else "none"
        what: dict[str, int | bool] = {"profile": deleted.profile, "sessions": deleted.sessions,
                                       "refresh_families": deleted.refresh_families,
                                       "tiktok_tokens": deleted.tiktok_tokens}
        receipt = Receipt(receipt_id=secrets.token_urlsafe(12),
                          deleted_at=datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="seconds"),
                          user_id=user_id, deleted=what, tiktok=tiktok)
        await self.events.emit("user.deleted", sub=user_id, data={"receipt_id": receipt.receipt_id,
                                                                  "deleted": receipt.deleted, "tiktok": tiktok},
                               logouts=self._logouts(owners, list(owners)))
        self.metrics.accounts_deleted.inc()
        log.info("account deleted", extra={"receipt_id": receipt.receipt_id})
        return receipt

    async def deauthorize(self, open_id: str, reason: int) -> bool:
        """TikTok says the user disconnected (its grant is already dead): end every session, drop the grant."""
        user_id = await self.accounts.user_id_for(open_id)
        if user_id is None:
            return False
        reason_name = DEAUTHORIZATION_REASONS.get(reason, "unknown")
        owners = await self.consent.store.families_by_client(user_id)
        ended = await self.accounts.end_sessions(user_id)
        await self.tiktok.mark_link_broken(user_id, f"tiktok_deauthorized:{reason_name}", self.clock.now())
        await self._ended(user_id, ended, "tiktok_deauthorized", owners)
        await self.events.emit("tiktok.deauthorized", sub=user_id, data={"reason": reason, "reason_name": reason_name})
        return True
