"""Third-party Python libraries, unchanged, against a live broker: Authlib drives the flows (authorization
URLs, PKCE, both client authentication methods, token, refresh, revocation and introspection calls) and checks
ID tokens with its own OpenID claims rules; joserfc and PyJWT verify every signature against the JWKS.

Each kind of client (confidential with client_secret_basic, confidential with client_secret_post and ES256 ID
tokens, public with PKCE) completes: a cancel at TikTok that ends at the app with access_denied, the code flow
through the broker's consent page, max_age, refresh with a new ID token, userinfo, introspection, revocation,
RP-initiated logout with post_logout_redirect_uri, and the back-channel logout token that follows."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.errors import MissingCodeException
from authlib.oauth2.rfc6749.parameters import parse_authorization_code_response
from authlib.oidc.core import CodeIDToken
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.backchannel import LogoutReceiver, logout_receiver
from tests.support.browser import Browser
from tests.support.relying_parties import BYE, KINDS, Kind, clients_yaml, until_app


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as running:
        yield running


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path, receiver: LogoutReceiver) -> Iterator[Stack]:
    clients = write_clients(tmp_path, clients_yaml(receiver.url))
    with live_stack(base_settings.with_overrides(clients_file=clients)) as running:
        yield running


def checked_id_token(stack: Stack, jwks: dict[str, object], token: dict[str, str], kind: Kind, *,
                     nonce: str | None, max_age: int | None = None) -> dict[str, object]:
    """Signature by joserfc and PyJWT; OpenID's claim rules (iss, aud, exp, nonce, at_hash, auth_time) by
    Authlib."""
    decoded = jose_jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=[kind.id_token_alg])
    params: dict[str, object] = {"client_id": kind.client_id, "access_token": token["access_token"]}
    if nonce is not None:
        params["nonce"] = nonce
    if max_age is not None:
        params["max_age"] = max_age
    claims = CodeIDToken(decoded.claims, decoded.header, options={"iss": {"values": [stack.settings.issuer]}},
                         params=params)
    claims.validate(leeway=30)
    key = jwt.PyJWKClient(f"{stack.broker.url}/.well-known/jwks.json").get_signing_key_from_jwt(token["id_token"])
    jwt.decode(token["id_token"], key.key, algorithms=[kind.id_token_alg], audience=kind.client_id,
               issuer=stack.settings.issuer)
    return dict(decoded.claims)


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
async def test_authlib_and_pyjwt_complete_every_flow(stack: Stack, receiver: LogoutReceiver, kind: Kind) -> None:
    async with httpx.AsyncClient() as http:
        metadata = (await http.get(f"{stack.broker.url}/.well-known/openid-configuration")).json()
        jwks = (await http.get(metadata["jwks_uri"])).json()
    browser = Browser()
    async with AsyncOAuth2Client(kind.client_id, kind.secret, scope="openid profile offline_access email",
                                 redirect_uri=kind.redirect_uri, code_challenge_method="S256",
                                 token_endpoint_auth_method=kind.auth_method,
                                 revocation_endpoint_auth_method=kind.auth_method) as client:
        # Cancel at TikTok: the app hears access_denied, with its state and the issuer.
        verifier = secrets.token_urlsafe(48)
        url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
        back, _ = until_app(stack, browser, url, at_tiktok="deny")
        with pytest.raises(MissingCodeException):
            parse_authorization_code_response(back, state)
        assert {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()} == {
            "error": "access_denied", "error_description": "Signing in with TikTok did not complete.",
            "state": state, "iss": stack.settings.issuer}

        # The code flow, through the broker's consent page (a third-party app).
        nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                     nonce=nonce)
        back, asked = until_app(stack, browser, url)
        assert asked and back.startswith(kind.redirect_uri)
        earlier = await client.fetch_token(metadata["token_endpoint"], authorization_response=back,
                                           code_verifier=verifier, state=state)
        assert earlier["scope"] == "openid profile offline_access"  # email is not known: left out
        first = checked_id_token(stack, jwks, earlier, kind, nonce=nonce)
        assert first["tiktok_open_id"] == ALICE

        # max_age=0: signed in again at TikTok; the consent is remembered.
        token_calls = sum(call["endpoint"] == "token" for call in stack.tiktok.calls)
        nonce, verifier = secrets.token_urlsafe(16), secrets.token_urlsafe(48)
        url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                     nonce=nonce, max_age="0")
        back, asked = until_app(stack, browser, url)
        assert not asked
        assert sum(call["endpoint"] == "token" for call in stack.tiktok.calls) == token_calls + 1
        token = await client.fetch_token(metadata["token_endpoint"], authorization_response=back,
                                         code_verifier=verifier, state=state)
        again = checked_id_token(stack, jwks, token, kind, nonce=nonce, max_age=0)
        assert int(str(again["auth_time"])) >= int(str(first["auth_time"])) and again["sub"] == first["sub"]

        # Refresh: a new ID token for the same sign-in.
        refreshed = await client.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
        renewed = checked_id_token(stack, jwks, refreshed, kind, nonce=None)
        assert (renewed["sub"], renewed["sid"], renewed["auth_time"]) == (again["sub"], again["sid"],
                                                                          again["auth_time"])
        assert (await client.get(metadata["userinfo_endpoint"])).json()["sub"] == first["sub"]
        if kind.secret:
            introspected = await client.introspect_token(metadata["introspection_endpoint"],
                                                         token=refreshed["access_token"])
            assert introspected.json()["active"] is True and introspected.json()["client_id"] == kind.client_id

        # Revocation ends the first sign-in's family at once.
        revoked = await client.revoke_token(metadata["revocation_endpoint"], token=earlier["refresh_token"])
        assert revoked.status_code == 200, revoked.text
        with pytest.raises(Exception, match="invalid_grant"):
            await client.refresh_token(metadata["token_endpoint"], refresh_token=earlier["refresh_token"])

    # RP-initiated logout ends this browser's session and the app's family started from it: a logout token.
    end = browser.client.get(metadata["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": BYE, "state": "bye"})
    assert end.status_code == 303 and end.headers["location"] == f"{BYE}?state=bye"
    logout_token = receiver.wait_for(1)[0]
    key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(logout_token)
    logout = jwt.decode(logout_token, key.key, algorithms=[kind.id_token_alg], audience=kind.client_id,
                        issuer=stack.settings.issuer, options={"require": ["iat", "exp", "jti", "sid", "sub"]})
    assert jwt.get_unverified_header(logout_token)["typ"] == "logout+jwt" and "nonce" not in logout
    assert logout["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    by_joserfc = jose_jwt.decode(logout_token, KeySet.import_key_set(jwks), algorithms=[kind.id_token_alg])
    assert by_joserfc.claims["sid"] == again["sid"] and by_joserfc.claims["sub"] == first["sub"]
    assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 401
    browser.close()
