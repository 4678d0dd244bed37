"""The OpenID Provider over TikTok: /authorize (code flow with PKCE), its consent step, and the code it issues.

Signing in at TikTok goes through the same LoginFlow as /login: an authorization request without a fitting
broker session is parked in Redis, the browser signs in, and comes back to /authorize/resume. A third-party app
then gets the broker's consent page (unless the user already agreed to these scopes); a first-party app does not.
The code exchange, refresh and userinfo live in oidc_tokens.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from broker.clients import Client, ClientRegistry
from broker.clock import Clock
from broker.domain import Session
from broker.errors import BrokerError, InvalidRequest
from broker.flows.authz_request import (
    REAUTHENTICATE,
    AuthorizationError,
    ClientReply,
    check_request,
    error_reply,
    needs_sign_in,
)
from broker.flows.consent import ConsentFlow, ConsentRequest, describe
from broker.flows.login import LoginFlow
from broker.flows.scopes import ScopePolicy
from broker.store.codes import AuthorizationStore, CodeRecord, PendingAuthorization

log = logging.getLogger("broker.oidc")

CODE_TTL = 60
PENDING_TTL = 600
PUSHED_TTL = 60
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
RESUME_PATH = "/authorize/resume"
# What a failed sign-in at TikTok tells the app (OpenID's authorization error codes); anything else is ours.
SIGN_IN_ERRORS = frozenset({"access_denied", "temporarily_unavailable", "login_required"})


@dataclass(frozen=True)
class ToTikTok:
    location: str
    binding_value: str


AuthorizeStep = ClientReply | ToTikTok | ConsentRequest


class OidcFlow:
    def __init__(self, *, clients: ClientRegistry, store: AuthorizationStore, login: LoginFlow,
                 consent: ConsentFlow, scopes: ScopePolicy, clock: Clock, issuer: str) -> None:
        self.clients = clients
        self.store = store
        self.login = login
        self.consent = consent
        self.scopes = scopes
        self.clock = clock
        self.issuer = issuer

    async def authorize(self, params: Mapping[str, str], session: Session | None,
                        binding_value: str | None) -> AuthorizeStep:
        params, pushed = await self._unpushed(params)
        _, request = check_request(params, clients=self.clients, scopes=self.scopes, issuer=self.issuer,
                                   now=self.clock.now(), pushed=pushed)
        async with self._answering(request):
            return await self._start(request, session, binding_value)

    async def _start(self, request: PendingAuthorization, session: Session | None,
                     binding_value: str | None) -> AuthorizeStep:
        if not needs_sign_in(request, session.signed_in_at if session else None, self.clock.now()):
            assert session is not None
            return await self._continue(request, session)
        if "none" in request.prompt.split():
            raise error_reply(request, self.issuer, "login_required", "The user is not signed in.")
        request_id = secrets.token_urlsafe(24)
        await self.store.put_pending(request_id, request, PENDING_TTL)
        start = await self.login.start(return_to=f"{RESUME_PATH}?request_id={request_id}",
                                       binding_value=binding_value,
                                       force_consent=bool(REAUTHENTICATE & set(request.prompt.split())))
        return ToTikTok(start.redirect_url, start.binding_value)

    async def _unpushed(self, params: Mapping[str, str]) -> tuple[Mapping[str, str], bool]:
        """The parameters of a pushed request when `request_uri` names one (RFC 9126 section 4; its use spends
        it), and whether they were pushed."""
        request_uri = params.get("request_uri", "")
        if not request_uri.startswith(REQUEST_URI_PREFIX):
            return params, False
        client_id = params.get("client_id", "")
        found = await self.store.take_pushed(client_id, request_uri)
        if found is None or found[0] != client_id:
            raise AuthorizationError("invalid_request_uri", "This request_uri is unknown, expired or already used.")
        return found[1], True

    async def push(self, params: Mapping[str, str], client: Client) -> tuple[str, int]:
        """RFC 9126: check a pushed request as /authorize would (errors answered as JSON), park its parameters;
        the request_uri and its lifetime."""
        if "request_uri" in params:
            raise AuthorizationError("invalid_request", "A pushed request cannot carry a request_uri.")
        if params.get("client_id", client.client_id) != client.client_id:
            raise AuthorizationError("invalid_request", "client_id does not match the authenticated client.")
        fields = {**params, "client_id": client.client_id}
        try:
            check_request(fields, clients=self.clients, scopes=self.scopes, issuer=self.issuer,
                          now=self.clock.now(), pushed=True)
        except AuthorizationError as error:
            raise AuthorizationError(error.code, error.description) from None  # answered here, not redirected
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
        await self.store.put_pushed(request_uri, client.client_id, fields, PUSHED_TTL)
        return request_uri, PUSHED_TTL

    async def resume(self, request_id: str, session: Session | None, error: str = "") -> AuthorizeStep:
        """Back from TikTok: the code (or the consent page), or the sign-in's failure for the app."""
        request = await self.store.take_pending(request_id) if request_id else None
        if request is None:
            raise InvalidRequest("This sign-in request has expired. Please start again from the application.")
        if error:
            code = error if error in SIGN_IN_ERRORS else "server_error"
            raise error_reply(request, self.issuer, code, "Signing in with TikTok did not complete.")
        # Only a sign-in that happened for this request counts (prompt=login, max_age, or none before).
        if session is None or session.signed_in_at < request.created_at:
            raise error_reply(request, self.issuer, "login_required", "Signing in did not complete.")
        async with self._answering(request):
            return await self._continue(request, session)

    async def _continue(self, request: PendingAuthorization, session: Session) -> ClientReply | ConsentRequest:
        client = self._client(request)
        prompts = request.prompt.split()
        if "consent" not in prompts and await self.consent.covers(session.user_id, client, request.scopes):
            await self.consent.used(session.user_id, client)
            return await self._issue_code(request, session)
        if client.first_party:  # prompt=consent to the company's own app: nothing to ask
            return await self._issue_code(request, session)
        if "none" in prompts:
            raise error_reply(request, self.issuer, "consent_required", "The user has not agreed to this app yet.")
        request_id = secrets.token_urlsafe(24)
        await self.store.put_pending(request_id, request, PENDING_TTL)
        return describe(client, request_id, request.scopes, request.redirect_uri)

    async def decide(self, request_id: str, session: Session, *, allow: bool) -> ClientReply:
        """The user's answer on the consent page."""
        request = await self.store.take_pending(request_id) if request_id else None
        if request is None:
            raise InvalidRequest("This request has expired. Please start again from the application.")
        if not allow:
            raise error_reply(request, self.issuer, "access_denied", "The user did not allow this app.")
        async with self._answering(request):
            await self.consent.grant(session.user_id, self._client(request), request.scopes)
            return await self._issue_code(request, session)

    @contextlib.asynccontextmanager
    async def _answering(self, request: PendingAuthorization) -> AsyncIterator[None]:
        """Once a request is validated, every failure goes back to the app (`temporarily_unavailable` when Redis
        or TikTok is away, `server_error` otherwise), never a dead end on a broker page."""
        try:
            yield
        except AuthorizationError:
            raise
        except BrokerError as error:
            log.warning("authorization for %s failed after validation: %s %s", request.client_id, error.code,
                        error.log_detail)
            code = "temporarily_unavailable" if error.status == 503 else "server_error"
            raise error_reply(request, self.issuer, code, error.description) from error

    def _client(self, request: PendingAuthorization) -> Client:
        client = self.clients.get(request.client_id)
        if client is None:  # removed from the clients file meanwhile
            raise InvalidRequest("Unknown client_id.")
        return client

    async def _issue_code(self, request: PendingAuthorization, session: Session) -> ClientReply:
        code = f"{session.user_id}.{secrets.token_urlsafe(32)}"
        record = CodeRecord(request.client_id, request.redirect_uri, request.scopes, request.nonce,
                            request.code_challenge, session.sid, session.signed_in_at)
        await self.store.put_code(session.user_id, hashlib.sha256(code.encode()).hexdigest(), record, CODE_TTL)
        params = {"code": code, "state": request.state, "iss": self.issuer}
        return ClientReply(request.redirect_uri, request.response_mode, {k: v for k, v in params.items() if v})
