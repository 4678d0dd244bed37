"""OpenID RP-Initiated Logout 1.0 at /logout: who asks (`id_token_hint`, `client_id`), where the browser goes
afterwards (`post_logout_redirect_uri`, exact match against the client's list, with `state`), and whether the
user must confirm first (always, unless a valid hint names the signed-in user)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from broker.clients import Client, ClientRegistry
from broker.domain import Session
from broker.errors import InvalidRequest
from broker.flows.account import AccountFlow
from broker.flows.return_urls import ReturnUrlPolicy
from broker.flows.tokens import TokenFlow
from broker.signing.id_tokens import IdTokenSigner

# The parameters a confirmation page carries back to /logout.
CARRIED = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")


@dataclass(frozen=True)
class LogoutRequest:
    client: Client | None
    hint: Mapping[str, object] | None  # the claims of a valid id_token_hint
    target: str  # where the browser goes once the user is signed out
    carried: dict[str, str] = field(default_factory=dict)

    def names(self, session: Session | None) -> bool:
        """Whether the hint vouches for ending this browser's session without asking."""
        return self.hint is not None and (session is None or self.hint.get("sub") == session.user_id)


def is_rp_logout(params: Mapping[str, str]) -> bool:
    """An app's logout request (as opposed to the broker's own pages' logout form)."""
    return bool(params.get("id_token_hint") or params.get("client_id"))


class RpLogout:
    def __init__(self, *, clients: ClientRegistry, id_tokens: IdTokenSigner, tokens: TokenFlow,
                 account: AccountFlow, return_urls: ReturnUrlPolicy) -> None:
        self.clients = clients
        self.id_tokens = id_tokens
        self.tokens = tokens
        self.account = account
        self.return_urls = return_urls

    def parse(self, params: Mapping[str, str]) -> LogoutRequest:
        """Check the request before anything ends; InvalidRequest (a page, never a redirect) when it names an
        unknown client or a post_logout_redirect_uri that client did not register."""
        hint = self.id_tokens.read_hint(params["id_token_hint"]) if params.get("id_token_hint") else None
        client_id = params.get("client_id", "")
        if hint is not None:
            audiences = hint.get("aud")
            named = [str(aud) for aud in (audiences if isinstance(audiences, list) else [audiences]) if aud]
            if not named or (client_id and client_id not in named):
                raise InvalidRequest("client_id does not match the id_token_hint.")
            client_id = client_id or named[0]
        client = self.clients.get(client_id) if client_id else None
        if client_id and client is None:
            raise InvalidRequest("Unknown client_id.")
        redirect = params.get("post_logout_redirect_uri", "")
        carried = {name: params[name] for name in CARRIED if params.get(name)}
        if client is not None and redirect:
            if redirect not in client.post_logout_redirect_uris:
                raise InvalidRequest("The post_logout_redirect_uri is not registered for this client.")
            state = params.get("state", "")
            target = redirect + (("&" if "?" in redirect else "?") + urlencode({"state": state}) if state else "")
            return LogoutRequest(client, hint, target, carried)
        # The broker's own pages: an allowlisted URL (BROKER_ALLOWED_RETURN_URLS), or the home page.
        return LogoutRequest(client, hint, self.return_urls.check(redirect or params.get("return_to") or None),
                             carried)

    async def end(self, request: LogoutRequest, session: Session | None) -> None:
        """Sign the browser out: its own session; or, with no cookie (nothing of the user's in this browser), only
        the app's own sign-in the hint's ID token came from. An ID token holds no power over the user's other
        sessions or TikTok link: the app's own token could end no more (POST /logout without the account power)."""
        if session is not None:
            await self.account.logout(session)
            return
        if request.hint is None or not request.hint.get("sid"):
            return
        family = await self.tokens.session_for({"sub": request.hint.get("sub"), "sid": request.hint.get("sid")})
        if family is not None:
            await self.account.logout(family, unlink=False)
