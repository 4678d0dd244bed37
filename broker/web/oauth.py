"""OAuth endpoints: /oauth/token (authorization code, refresh, client credentials, the TikTok SDK exchange, the
device code, session-cookie grant),
/oauth/revoke (RFC 7009), /oauth/introspect (RFC 7662) and /oauth/par (RFC 9126). Client authentication (RFC 6749
section 2.3.1) and the CSRF guard of the cookie grant live here."""

from __future__ import annotations

from dataclasses import asdict

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.client_entries import GRANT_DEVICE_CODE, GRANT_TOKEN_EXCHANGE
from broker.clients import Client
from broker.domain import TokenPair
from broker.errors import InvalidClient, InvalidGrant, InvalidRequest, UnsupportedGrantType
from broker.flows.dpop import TOKEN_TYPE as DPOP_TOKEN_TYPE
from broker.flows.tokens import SESSION_GRANT
from broker.web.bodies import media_type, read_form
from broker.web.client_addr import client_ip
from broker.web.cookies import read_session_cookie
from broker.web.cors import trusted_origins, with_cors
from broker.web.credentials import basic_credentials
from broker.web.render import NO_STORE
from broker.web.services import Services, services

FORM = "application/x-www-form-urlencoded"


async def _form(request: Request) -> FormData:
    if media_type(request) != FORM:
        raise InvalidRequest("The body must be application/x-www-form-urlencoded.")
    form = await read_form(request, multipart=False)
    for name in set(form.keys()):
        if len(form.getlist(name)) > 1:
            raise InvalidRequest(f"The parameter {name} appears more than once.")  # RFC 6749 section 3.2
    return form


def _params(form: FormData) -> dict[str, str]:
    return {name: value for name, value in form.items() if isinstance(value, str)}


def text(form: FormData, name: str) -> str | None:
    """A form field's value, None when absent or empty."""
    value = form.get(name)
    return value if isinstance(value, str) and value else None


async def limited_form(svc: Services, request: Request, endpoint: str) -> FormData:
    """The form, read only once this request has been charged to its client address (and to the client its
    Basic header names); a client named in the form instead is charged as soon as the form is read."""
    if not svc.limits.enabled:
        return await _form(request)
    try:
        basic = basic_credentials(request)
    except InvalidClient:
        basic = None
    await svc.limits.check(endpoint, ip=client_ip(request), client_id=basic[0] if basic else None)
    form = await _form(request)
    if basic is None and text(form, "client_id") is not None:
        await svc.limits.check(endpoint, ip=None, client_id=text(form, "client_id"))
    return form


def authenticate_client(svc: Services, request: Request, form: FormData, *, required: bool) -> Client | None:
    """The calling client, by Basic header or form fields (never both); None when none is named."""
    basic = basic_credentials(request)
    form_id, form_secret = text(form, "client_id"), text(form, "client_secret")
    if basic is not None and (form_secret is not None or (form_id and form_id != basic[0])):
        raise InvalidRequest("Use one client authentication method, not two.")
    client_id, secret = basic if basic is not None else (form_id, form_secret)
    if client_id is None:
        if required:
            raise InvalidClient("Client authentication is required.")
        return None
    client = svc.clients.authenticate(client_id, secret)
    if required and not client.confidential:
        raise InvalidClient("Only confidential clients may use this endpoint.")
    expected = "client_secret_basic" if basic is not None else ("client_secret_post" if secret else "none")
    if client.auth_method != expected:
        raise InvalidClient(f"This client authenticates with {client.auth_method}.")
    return client


def _token_response(request: Request, body: dict[str, object], client: Client | None) -> Response:
    return with_cors(request, JSONResponse(body, headers=NO_STORE), client.client_id if client else "")


# The grants a registered client uses, with why it must name itself (refresh tokens of the broker's own pages
# belong to no client).
CLIENT_NEEDED = {
    "authorization_code": "The code grant needs the client's client_id (and secret, if it has one).",
    "client_credentials": "Client authentication is required.",
    GRANT_TOKEN_EXCHANGE: "The TikTok SDK exchange needs the app's client_id.",
    GRANT_DEVICE_CODE: "The device grant needs the client's client_id (and secret, if it has one).",
}


async def token(request: Request) -> Response:
    svc = services(request)
    form = await limited_form(svc, request, "token")
    grant_type = text(form, "grant_type")
    if grant_type is None:
        raise InvalidRequest("grant_type is required.")
    if grant_type == SESSION_GRANT:
        return _token_response(request, {**asdict(await _session_grant(svc, request)), "token_type": "Bearer"}, None)
    if grant_type != "refresh_token" and grant_type not in CLIENT_NEEDED:
        raise UnsupportedGrantType()
    client = authenticate_client(svc, request, form, required=grant_type == "client_credentials")
    if client is None and grant_type != "refresh_token":
        raise InvalidClient(CLIENT_NEEDED[grant_type])
    # RFC 9449: the DPoP proof (the key the tokens are bound to) is checked before the grant does any work.
    jkt = await svc.dpop.token_request(request.headers.getlist("dpop"), client)
    body = await _grant(svc, request, form, grant_type, client, jkt)
    if jkt:
        body["token_type"] = DPOP_TOKEN_TYPE
    response = _token_response(request, body, client)
    nonce = svc.dpop.fresh_nonce() if jkt else None
    if nonce:
        response.headers["DPoP-Nonce"] = nonce
    return response


async def _grant(svc: Services, request: Request, form: FormData, grant_type: str, client: Client | None,
                 jkt: str) -> dict[str, object]:
    """The token answer of one grant, for a client authenticated already (None: only for refresh_token)."""
    if grant_type == "refresh_token":
        refresh_token = text(form, "refresh_token")
        if refresh_token is None:
            raise InvalidRequest("refresh_token is required.")
        return await svc.oidc_tokens.refresh(refresh_token, client, jkt)
    assert client is not None
    if grant_type == "authorization_code":
        code, redirect_uri = text(form, "code"), text(form, "redirect_uri")
        if code is None or redirect_uri is None:
            raise InvalidRequest("code and redirect_uri are required.")
        return await svc.oidc_tokens.exchange(code=code, redirect_uri=redirect_uri, client=client, jkt=jkt,
                                              code_verifier=text(form, "code_verifier") or "")
    if grant_type == "client_credentials":
        return svc.oidc_tokens.client_credentials(client, text(form, "scope"), jkt)
    if grant_type == GRANT_TOKEN_EXCHANGE:
        return await svc.sdk_exchange.exchange(_params(form), client, ip=client_ip(request), jkt=jkt,
                                               user_agent=request.headers.get("user-agent", ""))
    device_code = text(form, "device_code")
    if device_code is None:
        raise InvalidRequest("device_code is required.")
    return await svc.device.poll(device_code, client, jkt)


async def _session_grant(svc: Services, request: Request) -> TokenPair:
    """First token pair for a signed-in browser. CSRF guard: the request must come from a trusted origin
    (browsers set Origin on every cross-site POST and scripts cannot forge it)."""
    origin = request.headers.get("origin")
    if not origin or origin.lower() not in trusted_origins(svc):
        raise InvalidRequest("This grant is only available to pages on trusted origins.",
                             log_detail=f"session grant from origin {origin!r}")
    session = await svc.sessions.resolve(read_session_cookie(request, svc.settings))
    if session is None:
        raise InvalidGrant("No signed-in session.")
    return await svc.tokens.start_family(session)


async def revoke(request: Request) -> Response:
    svc = services(request)
    form = await limited_form(svc, request, "revoke")
    client = authenticate_client(svc, request, form, required=False)
    token_value = text(form, "token")
    if token_value is None:
        raise InvalidRequest("token is required.")
    await svc.tokens.revoke(token_value, client=client)
    # RFC 7009 section 2.2: 200 whether or not the token was known, so callers learn nothing from it.
    return with_cors(request, Response(status_code=200, headers=NO_STORE), client.client_id if client else "")


async def introspect(request: Request) -> Response:
    svc = services(request)
    form = await limited_form(svc, request, "introspect")
    caller = authenticate_client(svc, request, form, required=True)
    assert caller is not None
    token_value = text(form, "token")
    if token_value is None:
        raise InvalidRequest("token is required.")
    answer = await svc.tokens.introspect(token_value, caller=caller)
    return with_cors(request, JSONResponse(answer, headers=NO_STORE), caller.client_id)


async def par(request: Request) -> Response:
    """RFC 9126: an authorization request pushed by its client; /authorize then takes only its request_uri."""
    svc = services(request)
    form = await limited_form(svc, request, "par")
    client = authenticate_client(svc, request, form, required=False)
    if client is None:
        raise InvalidClient("Pushed requests need the client's client_id (and secret, if it has one).")
    params = {name: value for name, value in form.items() if isinstance(value, str)
              and name not in ("client_secret", "client_assertion", "client_assertion_type")}
    request_uri, expires_in = await svc.oidc.push(params, client)  # its refusals are answered as JSON here
    return with_cors(request, JSONResponse({"request_uri": request_uri, "expires_in": expires_in}, status_code=201,
                                           headers=NO_STORE), client.client_id)
