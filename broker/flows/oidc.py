"""The OpenID Provider over TikTok: /authorize (code flow with PKCE), the code exchange with ID tokens, userinfo.

Signing in at TikTok goes through the same LoginFlow as /login: an authorization request without a broker
session is parked in Redis, the browser signs in, and comes back to /authorize/resume, which issues the code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from broker.clients import Client, ClientRegistry
from broker.clock import Clock
from broker.domain import Session
from broker.errors import BrokerError, InvalidGrant, InvalidRequest, InvalidToken
from broker.flows.login import LoginFlow
from broker.flows.sessions import SessionService
from broker.flows.tokens import TokenFlow, parse_refresh_token
from broker.signing.id_tokens import IdTokenSigner
from broker.store.codes import AuthorizationStore, CodeRecord, PendingAuthorization
from broker.store.records import Records

SUPPORTED_SCOPES = ("openid", "profile")
CODE_TTL = 60
PENDING_TTL = 600
CODE_PATTERN = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")
CHALLENGE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


class RedirectToClient(BrokerError):
    """An error the client learns through its (already validated) redirect URI, per RFC 6749 4.1.2.1."""

    status = 302

    def __init__(self, location: str, code: str, description: str) -> None:
        super().__init__(description)
        self.location = location
        self.code = code


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode({k: v for k, v in params.items() if v})


def s256(verifier: str) -> str:
    """RFC 7636's S256 (base64url, as OIDC clients send it; TikTok's hex quirk stays inside its provider)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class AuthorizeStep:
    location: str
    binding_value: str | None = None  # set when the browser is sent to TikTok first


class OidcFlow:
    def __init__(self, *, clients: ClientRegistry, store: AuthorizationStore, login: LoginFlow,
                 sessions: SessionService, tokens: TokenFlow, id_tokens: IdTokenSigner, records: Records,
                 clock: Clock, issuer: str) -> None:
        self.clients = clients
        self.store = store
        self.login = login
        self.sessions = sessions
        self.tokens = tokens
        self.id_tokens = id_tokens
        self.records = records
        self.clock = clock
        self.issuer = issuer

    def validate(self, params: Mapping[str, str]) -> PendingAuthorization:
        """Client and redirect URI problems are shown on a page (never redirected); the rest go to the client."""
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise InvalidRequest("Unknown client_id.")
        redirect_uri = params.get("redirect_uri") or (client.redirect_uris[0] if len(client.redirect_uris) == 1
                                                      else "")
        if redirect_uri not in client.redirect_uris:
            raise InvalidRequest("The redirect_uri is not registered for this client.")
        state = params.get("state", "")

        def fail(code: str, description: str) -> RedirectToClient:
            return RedirectToClient(_with_query(redirect_uri, {"error": code, "error_description": description,
                                                               "state": state, "iss": self.issuer}), code, description)

        if params.get("response_type") != "code":
            raise fail("unsupported_response_type", "Only response_type=code is supported.")
        if len(state) > 1024 or len(params.get("nonce", "")) > 512:
            raise fail("invalid_request", "state or nonce is too long.")
        scopes = tuple(dict.fromkeys(params.get("scope", "openid").split()))
        if not set(scopes) <= set(SUPPORTED_SCOPES) or not set(scopes) <= set(client.scopes):
            raise fail("invalid_scope", "A requested scope is not available to this client.")
        challenge, method = params.get("code_challenge", ""), params.get("code_challenge_method", "")
        if challenge and (method != "S256" or not CHALLENGE_PATTERN.fullmatch(challenge)):
            raise fail("invalid_request", "PKCE needs code_challenge_method=S256 and a base64url challenge.")
        if not challenge and not client.confidential:
            raise fail("invalid_request", "Public clients must use PKCE (code_challenge with S256).")
        prompt = params.get("prompt", "")
        if prompt not in ("", "login", "none", "consent"):
            raise fail("invalid_request", "Unsupported prompt value.")
        return PendingAuthorization(client.client_id, redirect_uri, scopes, state, params.get("nonce", ""),
                                    challenge, prompt, self.clock.now())

    async def authorize(self, params: Mapping[str, str], session: Session | None,
                        binding_value: str | None) -> AuthorizeStep:
        request = self.validate(params)
        if session is not None and request.prompt != "login":
            return AuthorizeStep(await self._issue_code(request, session))
        if request.prompt == "none":
            raise RedirectToClient(_with_query(request.redirect_uri, {"error": "login_required",
                                                                      "state": request.state, "iss": self.issuer}),
                                   "login_required", "The user is not signed in.")
        request_id = secrets.token_urlsafe(24)
        await self.store.put_pending(request_id, request, PENDING_TTL)
        start = await self.login.start(return_to=f"/authorize/resume?request_id={request_id}",
                                       binding_value=binding_value, force_consent=request.prompt == "login")
        return AuthorizeStep(start.redirect_url, start.binding_value)

    async def resume(self, request_id: str, session: Session | None) -> str:
        request = await self.store.take_pending(request_id) if request_id else None
        if request is None:
            raise InvalidRequest("This sign-in request has expired. Please start again from the application.")
        if session is None or (request.prompt == "login" and session.created_at < request.created_at):
            raise RedirectToClient(_with_query(request.redirect_uri, {"error": "login_required",
                                                                      "state": request.state, "iss": self.issuer}),
                                   "login_required", "Signing in did not complete.")
        return await self._issue_code(request, session)

    async def _issue_code(self, request: PendingAuthorization, session: Session) -> str:
        code = f"{session.user_id}.{secrets.token_urlsafe(32)}"
        record = CodeRecord(request.client_id, request.redirect_uri, request.scopes, request.nonce,
                            request.code_challenge, session.sid, session.created_at)
        await self.store.put_code(session.user_id, hashlib.sha256(code.encode()).hexdigest(), record, CODE_TTL)
        return _with_query(request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer})

    async def exchange(self, *, code: str, redirect_uri: str, code_verifier: str, client: Client) -> dict[str, object]:
        match = CODE_PATTERN.fullmatch(code)
        if match is None:
            raise InvalidGrant("The authorization code is invalid or expired.")
        user_id, code_hash = match.group(1), hashlib.sha256(code.encode()).hexdigest()
        status, found = await self.store.take_code(user_id, code_hash)
        if status == "replayed":
            if isinstance(found, str) and found:
                await self.tokens.families.end(user_id, found)  # RFC 6749 10.5: revoke what the code produced
                self.sessions.forget(found)
            raise InvalidGrant("The authorization code was already used; the tokens it produced are revoked.")
        if not isinstance(found, CodeRecord):
            raise InvalidGrant("The authorization code is invalid or expired.")
        record = found
        if record.client_id != client.client_id or record.redirect_uri != redirect_uri:
            raise InvalidGrant("The authorization code was issued to another client or redirect_uri.")
        if record.code_challenge:
            if not VERIFIER_PATTERN.fullmatch(code_verifier) or not hmac.compare_digest(
                    s256(code_verifier), record.code_challenge):
                raise InvalidGrant("The PKCE code_verifier does not match.")
        elif code_verifier:
            raise InvalidGrant("No PKCE challenge was sent with the authorization request.")
        parent = await self.tokens.session_for({"sub": user_id, "sid": record.sid})
        if parent is None:
            raise InvalidGrant("The sign-in this code came from has ended.")
        pair = await self.tokens.start_family(parent, client=client, client_scopes=record.scopes)
        family = parse_refresh_token(pair.refresh_token)
        if family is not None:
            await self.store.remember_family(user_id, code_hash, family.sid)
        body: dict[str, object] = {"access_token": pair.access_token, "token_type": "Bearer",
                                   "expires_in": pair.expires_in, "refresh_token": pair.refresh_token,
                                   "scope": pair.scope}
        if "openid" in record.scopes:
            extra = await self._profile_claims(parent, record.scopes)
            body["id_token"] = self.id_tokens.issue(sub=user_id, client_id=client.client_id, ttl=pair.expires_in,
                                                    auth_time=record.auth_time, sid=family.sid if family else "",
                                                    nonce=record.nonce, access_token=pair.access_token,
                                                    extra=extra)
        return body

    async def _profile_claims(self, session: Session, scopes: tuple[str, ...]) -> dict[str, object]:
        if "profile" not in scopes:
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
        session = await self.tokens.session_for(dict(claims))
        if session is None:
            raise InvalidToken("The session has ended.")
        scopes = session.client_scopes if session.client_id else SUPPORTED_SCOPES
        return {"sub": session.user_id, **await self._profile_claims(session, scopes)}
