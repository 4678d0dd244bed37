"""An OpenID authorization request checked parameter by parameter, and how answers travel back to the app.

Problems with the client or its redirect URI are shown on a page (sending them anywhere would make the broker an
open redirector); every later problem goes back to the app's validated redirect URI as `error`, `state` and
`iss` (RFC 9207), in the response mode it asked for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker.client_entries import GRANT_AUTHORIZATION_CODE
from broker.clients import Client, ClientRegistry
from broker.errors import BrokerError
from broker.flows.scopes import ScopePolicy
from broker.store.codes import PendingAuthorization

RESPONSE_MODES = ("query", "fragment", "form_post")
PROMPTS = ("none", "login", "consent", "select_account")
# Prompt values that make the user sign in at TikTok again, with TikTok's page shown (account switching).
REAUTHENTICATE = frozenset({"login", "select_account"})
CHALLENGE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43,128}$")
MAX_AGE_LIMIT = 10**9


@dataclass(frozen=True)
class ClientReply:
    """An answer for the app: its redirect URI, the response mode and the parameters (code or error)."""

    redirect_uri: str
    response_mode: str
    params: dict[str, str] = field(default_factory=dict)


class AuthorizationError(BrokerError):
    """A refused authorization request: back to the app when `reply` is set, otherwise shown on a page (or, at
    the PAR endpoint, answered as JSON)."""

    status = 400

    def __init__(self, code: str, description: str, reply: ClientReply | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.reply = reply


def error_reply(request: PendingAuthorization | ClientReply, issuer: str, code: str, description: str,
                state: str | None = None) -> AuthorizationError:
    """An error that goes back to the app through a request's (already validated) redirect URI."""
    if isinstance(request, PendingAuthorization):
        uri, mode, state = request.redirect_uri, request.response_mode, request.state
    else:
        uri, mode = request.redirect_uri, request.response_mode
    params = {"error": code, "error_description": description, "state": state or "", "iss": issuer}
    return AuthorizationError(code, description, ClientReply(uri, mode, {k: v for k, v in params.items() if v}))


def _prompts(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value.split()))


def check_request(params: Mapping[str, str], *, clients: ClientRegistry, scopes: ScopePolicy, issuer: str,
                  now: float, pushed: bool = False) -> tuple[Client, PendingAuthorization]:
    """The client and its request; AuthorizationError for anything wrong (with a reply once the redirect URI is
    known to be the client's). `pushed`: the parameters came through PAR."""
    client = clients.get(params.get("client_id", ""))
    if client is None:
        raise AuthorizationError("invalid_request", "Unknown client_id.")
    redirect_uri = params.get("redirect_uri") or (client.redirect_uris[0] if len(client.redirect_uris) == 1
                                                  else "")
    if not client.accepts_redirect_uri(redirect_uri):
        raise AuthorizationError("invalid_request", "The redirect_uri is not registered for this client.")
    mode = params.get("response_mode") or "query"
    target = ClientReply(redirect_uri, mode if mode in RESPONSE_MODES else "query")
    state = params.get("state", "")

    def fail(code: str, description: str) -> AuthorizationError:
        return error_reply(target, issuer, code, description, state=state[:1024])

    if mode not in RESPONSE_MODES:
        raise fail("invalid_request", f"response_mode must be one of {', '.join(RESPONSE_MODES)}.")
    if "request" in params:
        raise fail("request_not_supported", "Request objects are not supported; send the parameters as they are.")
    if "request_uri" in params:
        raise fail("request_uri_not_supported", "request_uri is supported only for pushed authorization requests.")
    if client.require_par and not pushed:
        raise fail("invalid_request", "This client must push its authorization requests to the PAR endpoint.")
    if not client.may_use(GRANT_AUTHORIZATION_CODE):
        raise fail("unauthorized_client", "This client may not use the authorization code flow.")
    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported.")
    if len(state) > 1024 or len(params.get("nonce", "")) > 512:
        raise fail("invalid_request", "state or nonce is too long.")
    granted = scopes.grant(params.get("scope"), client)
    if granted.refused:
        raise fail("invalid_scope", f"Not available to this client: {' '.join(granted.refused)}.")
    challenge, method = params.get("code_challenge", ""), params.get("code_challenge_method", "")
    if challenge and (method != "S256" or not CHALLENGE_PATTERN.fullmatch(challenge)):
        raise fail("invalid_request", "PKCE needs code_challenge_method=S256 and a base64url challenge.")
    if not challenge and not client.confidential:
        raise fail("invalid_request", "Public clients must use PKCE (code_challenge with S256).")
    prompts = _prompts(params.get("prompt", ""))
    if any(value not in PROMPTS for value in prompts):
        raise fail("invalid_request", f"prompt values are {', '.join(PROMPTS)}.")
    if "none" in prompts and len(prompts) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined with other values.")
    max_age: int | None = None
    if params.get("max_age"):
        raw = params["max_age"]
        if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_AGE_LIMIT:
            raise fail("invalid_request", "max_age must be a whole number of seconds.")
        max_age = int(raw)
    return client, PendingAuthorization(
        client.client_id, redirect_uri, granted.scopes, state, params.get("nonce", ""), challenge,
        " ".join(prompts), now, response_mode=mode, max_age=max_age)


def needs_sign_in(request: PendingAuthorization, signed_in_at: float | None, now: float) -> bool:
    """Whether the user must (again) sign in at TikTok before a code is issued."""
    if signed_in_at is None or REAUTHENTICATE & set(request.prompt.split()):
        return True
    return request.max_age is not None and now - signed_in_at > request.max_age
