"""The token side of the OpenID Provider: the code exchange (ID token included), refresh with a fresh ID token,
client_credentials, and userinfo."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Mapping

from broker.client_entries import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN,
)
from broker.clients import Client
from broker.clock import Clock
from broker.domain import Session, TokenPair
from broker.errors import InvalidGrant, InvalidScope, InvalidToken, UnauthorizedClient
from broker.flows.scopes import BROKER_SCOPES, OPENID, PROFILE, ScopePolicy, broker_part, tiktok_part
from broker.flows.tokens import CLIENT_SID_PREFIX, TokenFlow, parse_refresh_token
from broker.signing.id_tokens import IdTokenSigner
from broker.signing.tokens import TokenService
from broker.store.codes import AuthorizationStore, CodeRecord
from broker.store.records import Records

CODE_PATTERN = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")
VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def s256(verifier: str) -> str:
    """RFC 7636's S256 (base64url, as OIDC clients send it; TikTok's hex quirk stays inside its provider)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _body(pair: TokenPair, *, with_refresh: bool) -> dict[str, object]:
    body: dict[str, object] = {"access_token": pair.access_token, "refresh_token": pair.refresh_token,
                               "expires_in": pair.expires_in, "scope": pair.scope, "token_type": "Bearer"}
    if not with_refresh:
        del body["refresh_token"]
    return body


class OidcTokens:
    def __init__(self, *, store: AuthorizationStore, tokens: TokenFlow, access_tokens: TokenService,
                 id_tokens: IdTokenSigner, records: Records, scopes: ScopePolicy, clock: Clock) -> None:
        self.store = store
        self.tokens = tokens
        self.access_tokens = access_tokens
        self.id_tokens = id_tokens
        self.records = records
        self.scopes = scopes
        self.clock = clock

    async def exchange(self, *, code: str, redirect_uri: str, code_verifier: str, client: Client,
                       jkt: str = "") -> dict[str, object]:
        if not client.may_use(GRANT_AUTHORIZATION_CODE):
            raise UnauthorizedClient("This client may not use the authorization code flow.")
        match = CODE_PATTERN.fullmatch(code)
        if match is None:
            raise InvalidGrant("The authorization code is invalid or expired.")
        user_id, code_hash = match.group(1), hashlib.sha256(code.encode()).hexdigest()
        # Checked against the client and redirect URI before it is spent: a client that does not own a leaked
        # code can neither burn it nor revoke what its owner got for it.
        status, found = await self.store.take_code(user_id, code_hash, client_id=client.client_id,
                                                   redirect_uri=redirect_uri)
        if status == "mismatch":
            raise InvalidGrant("The authorization code was issued to another client or redirect_uri.")
        if status == "replayed":
            if isinstance(found, str) and found:
                await self.tokens.families.end(user_id, found)  # RFC 6749 10.5: revoke what the code produced
                self.tokens.sessions.forget(found)
            raise InvalidGrant("The authorization code was already used; the tokens it produced are revoked.")
        if not isinstance(found, CodeRecord):
            raise InvalidGrant("The authorization code is invalid or expired.")
        record = found
        if record.code_challenge:
            if not VERIFIER_PATTERN.fullmatch(code_verifier) or not hmac.compare_digest(
                    s256(code_verifier), record.code_challenge):
                raise InvalidGrant("The PKCE code_verifier does not match.")
        elif code_verifier:
            raise InvalidGrant("No PKCE challenge was sent with the authorization request.")
        parent = await self.tokens.session_for({"sub": user_id, "sid": record.sid})
        if parent is None:
            raise InvalidGrant("The sign-in this code came from has ended.")
        family_sid, body = await self.issue(parent, client, record.scopes, auth_time=record.auth_time,
                                            nonce=record.nonce, jkt=jkt)
        await self.store.remember_family(user_id, code_hash, family_sid)
        return body

    async def issue(self, parent: Session, client: Client, scopes: tuple[str, ...], *, auth_time: float,
                    nonce: str = "", jkt: str = "") -> tuple[str, dict[str, object]]:
        """A new refresh family of `client` under `parent`, granted `scopes`, and the token answer: the access
        token, a refresh token when the client may refresh, an ID token when `openid` was granted. Also returns
        the family's sid (the `sid` of its tokens). `jkt`: the DPoP key they are bound to."""
        pair = await self.tokens.start_family(parent, client=client, client_scopes=broker_part(scopes),
                                              tiktok_scopes=tiktok_part(scopes), jkt=jkt)
        family = parse_refresh_token(pair.refresh_token)
        assert family is not None
        body = _body(pair, with_refresh=client.may_use(GRANT_REFRESH_TOKEN))
        if OPENID in scopes:
            body["id_token"] = await self.id_token(parent, client, scopes, sid=family.sid, auth_time=auth_time,
                                                   nonce=nonce, access_token=pair.access_token, ttl=pair.expires_in)
        return family.sid, body

    async def refresh(self, refresh_token: str, client: Client | None, jkt: str = "") -> dict[str, object]:
        """Rotate; with `openid` granted, a fresh ID token (same sub, sid and auth_time, no nonce: OIDC 12.2)."""
        if client is not None and not client.may_use(GRANT_REFRESH_TOKEN):
            raise UnauthorizedClient("This client may not use refresh tokens.")
        pair, family = await self.tokens.refresh_family(refresh_token, client=client, jkt=jkt)
        body = _body(pair, with_refresh=True)
        if client is None or OPENID not in pair.scope.split():
            return body
        body["id_token"] = await self.id_token(family, client, family.client_scopes, sid=family.sid,
                                               auth_time=family.signed_in_at, nonce="",
                                               access_token=pair.access_token, ttl=pair.expires_in)
        return body

    async def id_token(self, session: Session, client: Client, scopes: tuple[str, ...], *, sid: str,
                       auth_time: float, nonce: str, access_token: str, ttl: int) -> str:
        extra = await self.profile_claims(session, scopes)
        return self.id_tokens.issue(sub=session.user_id, client_id=client.client_id, ttl=ttl, auth_time=auth_time,
                                    sid=sid, nonce=nonce, access_token=access_token, extra=extra,
                                    alg=client.id_token_alg)

    async def profile_claims(self, session: Session, scopes: tuple[str, ...]) -> dict[str, object]:
        if PROFILE not in scopes:
            return {}
        profile = await self.records.get_user(session.user_id)
        claims: dict[str, object] = {"name": profile.get("display_name") or session.name,
                                     "tiktok_open_id": session.open_id}
        if profile.get("avatar_url") or session.picture:
            claims["picture"] = profile.get("avatar_url") or session.picture
        if profile.get("username"):
            claims["preferred_username"] = profile["username"]
        return claims

    async def userinfo(self, claims: Mapping[str, object]) -> dict[str, object]:
        """Standard claims for an access token, limited to what its client was granted (all for the broker's own)."""
        if str(claims.get("sid", "")).startswith(CLIENT_SID_PREFIX):
            raise InvalidToken("This token stands for no user.")
        session = await self.tokens.session_for(dict(claims))
        if session is None:
            raise InvalidToken("The session has ended.")
        scopes = session.client_scopes if session.client_id else BROKER_SCOPES
        return {"sub": session.user_id, **await self.profile_claims(session, scopes)}

    def client_credentials(self, client: Client, requested: str | None, jkt: str = "") -> dict[str, object]:
        """An access token for the client itself (sub = its id, no user): for its own calls to services that
        accept its audience. Only scopes registered for it that name no user's data."""
        if not client.confidential or not client.may_use(GRANT_CLIENT_CREDENTIALS):
            raise UnauthorizedClient("This client may not use the client_credentials grant.")
        names = tuple(dict.fromkeys((requested or "").split()))
        usable = [s for s in client.scopes if s not in BROKER_SCOPES and s not in self.scopes.tiktok]
        if any(name not in usable for name in names):
            raise InvalidScope("A requested scope is not available to this client without a user.")
        granted = " ".join(names or usable)
        issued = self.access_tokens.issue(sub=client.client_id, sid=CLIENT_SID_PREFIX + secrets.token_urlsafe(12),
                                          scope=granted, extra={"client_id": client.client_id,
                                                                **({"cnf": {"jkt": jkt}} if jkt else {})},
                                          audience=client.token_audience)
        expires_in = max(1, math.ceil(issued.expires_at - self.clock.now()))
        return {"access_token": issued.token, "token_type": "Bearer", "expires_in": expires_in, "scope": granted}
