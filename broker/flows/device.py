"""The device authorization grant (RFC 8628), for devices without a browser: a TV, a console, a command line on a
server. The device shows a short user code; the person opens <issuer>/device on a phone or laptop, signs in with
TikTok if needed, enters the code and confirms the app; the device, polling the token endpoint, then gets the
broker's tokens under a session of kind app of its own (so signing out of that browser leaves the TV signed in).

The person always confirms which app they let in (RFC 8628 section 5.4: a code can be phished), and a third-party
app's confirmation is its consent, remembered as on the consent page. User codes are short, so guessing them is
rate limited by the web layer.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from broker.client_entries import ACCOUNT_SCOPE, GRANT_DEVICE_CODE
from broker.clients import Client, ClientRegistry
from broker.clock import Clock
from broker.domain import Session
from broker.errors import BrokerError, DeviceGrantState, InvalidGrant, InvalidScope, UnauthorizedClient
from broker.flows.consent import SCOPE_WORDS, ConsentFlow
from broker.flows.devices import device_label
from broker.flows.oidc_tokens import OidcTokens
from broker.flows.scopes import ScopePolicy, tiktok_part
from broker.flows.sessions import AppSignIn, SessionService
from broker.store.device_codes import DeviceCodes, DeviceRequest
from broker.store.records import AccountDeleted, Records

log = logging.getLogger("broker.device")

# RFC 8628 section 6.1: consonants only (no words spelled by accident), 20^8 codes (34 bits).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
DEVICE_CODE_TTL = 600
POLL_INTERVAL = 5
SLOW_DOWN_STEP = 5  # seconds added to the interval on each slow_down, for this and every later poll
VERIFICATION_PATH = "/device"
MAX_DEVICE_CODE = 128
POLL_ANSWERS = {
    "pending": ("authorization_pending", "The user has not answered yet."),
    "slow_down": ("slow_down", f"Polling too often: wait {SLOW_DOWN_STEP} seconds more between requests."),
    "denied": ("access_denied", "The user did not allow this device."),
    "expired": ("expired_token", "The device code has expired: start again."),
}


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def shown(user_code: str) -> str:
    """XXXX-XXXX, as the device shows it and the person types it."""
    return f"{user_code[:4]}-{user_code[4:]}"


def normalized_user_code(typed: str) -> str | None:
    """The code a person typed, upper-cased without dashes and spaces; None when it cannot be a user code."""
    cleaned = "".join(ch for ch in typed.upper() if ch not in "- ")
    if len(cleaned) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in cleaned):
        return None
    return cleaned


@dataclass(frozen=True)
class DeviceApproval:
    """What /device shows before the person answers: the app, the code to compare, what the app would get."""

    user_code: str  # XXXX-XXXX
    client: Client
    described: tuple[str, ...]  # for a third-party app: its consent, in words
    tiktok_scopes: tuple[str, ...]


def _approval(user_code: str, client: Client, request: DeviceRequest) -> DeviceApproval:
    described = () if client.first_party else tuple(SCOPE_WORDS[s] for s in request.scopes if s in SCOPE_WORDS)
    return DeviceApproval(shown(user_code), client, described, tiktok_part(request.scopes))


class DeviceFlow:
    def __init__(self, *, store: DeviceCodes, clients: ClientRegistry, scopes: ScopePolicy, consent: ConsentFlow,
                 records: Records, sessions: SessionService, oidc_tokens: OidcTokens, clock: Clock,
                 issuer: str) -> None:
        self.store = store
        self.clients = clients
        self.scopes = scopes
        self.consent = consent
        self.records = records
        self.sessions = sessions
        self.oidc_tokens = oidc_tokens
        self.clock = clock
        self.issuer = issuer

    async def start(self, client: Client, scope: str | None, *, user_agent: str = "") -> dict[str, object]:
        """POST /oauth/device_authorization: a device code to poll with and a user code for the person."""
        if not client.may_use(GRANT_DEVICE_CODE):
            raise UnauthorizedClient("This client may not use the device authorization grant.")
        granted = self.scopes.grant(scope, client)
        if granted.refused:
            raise InvalidScope(f"Not available to this client: {' '.join(granted.refused)}.")
        if ACCOUNT_SCOPE in granted.scopes:
            # Whoever starts the flow gets what the person allows, and a user code can be phished (section 5.4):
            # never the power to delete the account or sign the user out everywhere.
            raise InvalidScope(f"The scope {ACCOUNT_SCOPE} is not available through the device grant.")
        device_code = secrets.token_urlsafe(32)
        request = DeviceRequest(client.client_id, granted.scopes, self.clock.now() + DEVICE_CODE_TTL,
                                device_label(user_agent) or "a device")
        for _ in range(5):  # a clash with a live code is rare (20^8 codes): draw again
            user_code = new_user_code()
            if await self.store.create(_hash(device_code), _hash(user_code), request, interval=POLL_INTERVAL):
                break
        else:
            raise BrokerError(log_detail="no free user code after 5 draws")
        verification = f"{self.issuer}{VERIFICATION_PATH}"
        return {"device_code": device_code, "user_code": shown(user_code), "verification_uri": verification,
                "verification_uri_complete": f"{verification}?user_code={shown(user_code)}",
                "expires_in": DEVICE_CODE_TTL, "interval": POLL_INTERVAL}

    async def pending(self, typed: str) -> DeviceApproval | None:
        """The authorization a typed user code names, while it waits for an answer; None otherwise."""
        user_code = normalized_user_code(typed)
        found = await self.store.pending(_hash(user_code), self.clock.now()) if user_code else None
        client = self.clients.get(found[1].client_id) if found else None
        if found is None or client is None or user_code is None:
            return None
        return _approval(user_code, client, found[1])

    async def decide(self, typed: str, session: Session, *, allow: bool) -> DeviceApproval | None:
        """The person's answer for the device, once; None when the code is no longer waiting."""
        user_code = normalized_user_code(typed)
        found = await self.store.pending(_hash(user_code), self.clock.now()) if user_code else None
        client = self.clients.get(found[1].client_id) if found else None
        if found is None or client is None or user_code is None:
            return None
        device_hash, request = found
        approval = None
        if allow:
            approval = DeviceRequest(request.client_id, request.scopes, request.expires_at, request.device,
                                     user_id=session.user_id, open_id=session.open_id, name=session.name,
                                     tiktok_scopes=session.scopes, auth_time=session.signed_in_at)
        if await self.store.decide(device_hash, _hash(user_code), self.clock.now(), approval) != "ok":
            return None
        if allow:
            await self.consent.grant(session.user_id, client, request.scopes)  # a third-party app's consent
        log.info("device %s", "allowed" if allow else "denied",
                 extra={"user_id": session.user_id, "client_id": client.client_id})
        return _approval(user_code, client, request)

    async def poll(self, device_code: str, client: Client, jkt: str = "") -> dict[str, object]:
        """The token endpoint's device_code grant: the tokens once the person allowed it, else where it stands."""
        if not client.may_use(GRANT_DEVICE_CODE):
            raise UnauthorizedClient("This client may not use the device authorization grant.")
        if len(device_code) > MAX_DEVICE_CODE:
            raise InvalidGrant("The device code is invalid.")
        state, request = await self.store.poll(_hash(device_code), client.client_id, self.clock.now(),
                                               SLOW_DOWN_STEP)
        if state in POLL_ANSWERS:
            raise DeviceGrantState(*POLL_ANSWERS[state])
        if state == "used":
            raise InvalidGrant("The device code was already used.")
        if state != "approved" or request is None:
            raise InvalidGrant("The device code is invalid.")
        session = self.sessions.app_session(user_id=request.user_id, open_id=request.open_id, name=request.name,
                                            tiktok_scopes=request.tiktok_scopes, auth_time=request.auth_time,
                                            app=AppSignIn(client.client_id, request.device))
        try:
            await self.records.save_session(session, self.clock.now())
        except AccountDeleted:
            raise InvalidGrant("The account that allowed this device no longer exists.") from None
        family_sid, body = await self.oidc_tokens.issue(session, client, request.scopes, auth_time=request.auth_time,
                                                        jkt=jkt)
        log.info("device signed in", extra={"user_id": request.user_id, "sid": family_sid})
        return body
