"""Apps as principals with bounded powers, over a live stack: a third-party app's token opens neither the
gateway, nor the TikTok proxy beyond its scopes, nor the account's powers, and leaves Redis exactly as it was;
introspection answers a client for its own tokens and its audience only; a code is checked before it is spent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import redis

from broker.clients import secret_digest
from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.apps import App, authorize, exchange, reply_params, tokens_for
from tests.support.browser import Browser

GATEWAY_AUDIENCE = "https://gateway.example.com"
THIRD = App("photos", "https://photos.example.com/cb", "photos-secret-0123456789-abcdefghijklmnop")
OURS = App("ours", "https://app.example.com/ours/cb")
GATEWAY = App("gateway", "", "gateway-secret-0123456789-abcdefghijklmnop")


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: {THIRD.client_id}
    client_name: Photo Frame
    client_secret_sha256: {secret_digest(str(THIRD.secret))}
    redirect_uris: ["{THIRD.redirect_uri}"]
    scopes: [openid, profile, user.info.basic]
  - client_id: {OURS.client_id}
    first_party: true
    redirect_uris: ["{OURS.redirect_uri}"]
    scopes: [openid, profile, account, user.info.basic, user.info.profile]
  - client_id: {GATEWAY.client_id}
    first_party: true
    client_secret_sha256: {secret_digest(str(GATEWAY.secret))}
    audience: {GATEWAY_AUDIENCE}
""")
    settings = base_settings.with_overrides(clients_file=clients, gateway_audience=GATEWAY_AUDIENCE)
    with live_stack(settings) as running:
        yield running


@pytest.fixture
def alice(stack: Stack) -> Iterator[Browser]:
    browser = Browser()
    assert browser.consent(browser.get(f"{stack.broker.url}/login"), user=ALICE,
                           scopes=("user.info.basic", "user.info.profile")).status_code == 200
    yield browser
    browser.close()


def everything_in(redis_sync: redis.Redis) -> dict[str, bytes]:
    """Every key with its value, but the address-wide rate-limit buckets (`{rl:...}`): a refused request is
    charged to its address like any other, before anything else is looked at."""
    raw = redis.Redis(connection_pool=redis_sync.connection_pool)
    return {key: raw.dump(key) or b"" for key in redis_sync.keys("*") if not key.startswith("broker:{rl:")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_third_party_token_holds_no_power_and_changes_nothing(stack: Stack, alice: Browser,
                                                                 redis_sync: redis.Redis) -> None:
    url = stack.broker.url
    third = tokens_for(alice, url, THIRD, scope="openid profile user.info.basic")
    claims = jwt.decode(third["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "photos" and claims["client_id"] == "photos"  # its own id, never the broker's
    assert claims["scope"] == "openid profile user.info.basic"  # only what it registered and was granted
    other = Browser()  # Alice on a second device: a session a powerful token could end
    assert other.consent(other.get(f"{url}/login?prompt=login"), user=ALICE).status_code == 200
    other_sid = jwt.decode(other.client.get(f"{url}/auth/verify").headers["authorization"][7:],
                           options={"verify_signature": False})["sid"]

    before = everything_in(redis_sync)
    refusals = {
        "gateway": httpx.get(f"{url}/auth/verify", headers=bearer(third["access_token"])),
        "proxy beyond scopes": httpx.get(f"{url}/tiktok/v2/user/info/", params={"fields": "open_id,username"},
                                         headers=bearer(third["access_token"])),
        "logout everywhere": httpx.post(f"{url}/logout", data={"everywhere": "true"},
                                        headers=bearer(third["access_token"])),
        "end another session": httpx.post(f"{url}/account/sessions/end", data={"sid": other_sid},
                                          headers=bearer(third["access_token"])),
        "deletion": httpx.delete(f"{url}/account", headers=bearer(third["access_token"])),
    }
    assert refusals.pop("gateway").status_code == 401
    for what, response in refusals.items():
        assert response.status_code == 403, (what, response.text)
        assert response.json()["error"] == "insufficient_scope", what
    assert everything_in(redis_sync) == before  # nothing changed: no session ended, no user's bucket charged

    # Within its scopes the proxy serves it (user.info.basic covers open_id), and the session lives on.
    basic = httpx.get(f"{url}/tiktok/v2/user/info/", params={"fields": "open_id"},
                      headers=bearer(third["access_token"]))
    assert basic.status_code == 200, basic.text
    assert other.client.get(f"{url}/auth/verify").status_code == 200
    other.close()


def test_the_session_jwt_and_a_first_party_account_token_hold_the_powers(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    session_jwt = alice.client.get(f"{url}/auth/verify").headers["authorization"][7:]
    assert jwt.decode(session_jwt, options={"verify_signature": False})["aud"] == GATEWAY_AUDIENCE
    assert httpx.get(f"{url}/auth/verify", headers=bearer(session_jwt)).status_code == 200

    ours = tokens_for(alice, url, OURS, scope="openid account")  # first party: no consent page
    assert "account" in ours["scope"].split()
    other = Browser()
    assert other.consent(other.get(f"{url}/login?prompt=login"), user=ALICE).status_code == 200
    other_sid = jwt.decode(other.client.get(f"{url}/auth/verify").headers["authorization"][7:],
                           options={"verify_signature": False})["sid"]
    ended = httpx.post(f"{url}/account/sessions/end", data={"sid": other_sid}, headers=bearer(ours["access_token"]))
    assert ended.status_code == 200 and ended.json() == {"ended": 1}
    assert other.client.get(f"{url}/auth/verify").status_code == 401
    other.close()

    without = tokens_for(alice, url, OURS, scope="openid")  # first party, but not the account scope
    refused = httpx.delete(f"{url}/account", headers=bearer(without["access_token"]))
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"
    deleted = httpx.delete(f"{url}/account", headers=bearer(session_jwt))
    assert deleted.status_code == 200 and deleted.json()["deleted"]["profile"] is True


def test_a_third_party_token_ends_only_its_own_family_and_keeps_the_tiktok_link(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    third = tokens_for(alice, url, THIRD)
    answer = httpx.post(f"{url}/logout", headers=bearer(third["access_token"]))
    assert answer.status_code == 200 and answer.json() == {"ended": 1, "tiktok": "kept"}
    assert alice.client.get(f"{url}/auth/verify").status_code == 200  # Alice's own session lives on
    refreshed = httpx.post(f"{url}/oauth/token", auth=THIRD.auth,
                           data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"]})
    assert refreshed.status_code == 400


def introspect(stack: Stack, app: App, token: str) -> dict[str, object]:
    answer = httpx.post(f"{stack.broker.url}/oauth/introspect", data={"token": token}, auth=app.auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_introspection_answers_for_the_callers_tokens_and_audience_only(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    session_jwt = alice.client.get(f"{url}/auth/verify").headers["authorization"][7:]
    third = tokens_for(alice, url, THIRD)
    assert introspect(stack, THIRD, third["access_token"])["active"] is True
    assert introspect(stack, THIRD, third["refresh_token"])["client_id"] == "photos"
    assert introspect(stack, THIRD, session_jwt) == {"active": False}  # neither its token nor its audience
    assert introspect(stack, GATEWAY, session_jwt)["active"] is True  # the gateway audience's own
    assert introspect(stack, GATEWAY, third["access_token"]) == {"active": False}
    assert introspect(stack, GATEWAY, third["refresh_token"]) == {"active": False}


def test_a_code_is_checked_before_it_is_spent(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    response, verifier = authorize(alice, url, OURS)
    code = reply_params(response)["code"]
    # Another client, or the right client with another redirect URI: refused, and the code is untouched...
    stolen = exchange(url, THIRD, code, verifier, redirect_uri=OURS.redirect_uri)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    wrong_uri = exchange(url, OURS, code, verifier, redirect_uri="https://app.example.com/elsewhere")
    assert wrong_uri.status_code == 400
    # ...so its owner still redeems it, and a thief's replay afterwards revokes nothing.
    owned = exchange(url, OURS, code, verifier)
    assert owned.status_code == 200, owned.text
    assert exchange(url, THIRD, code, verifier, redirect_uri=OURS.redirect_uri).status_code == 400
    assert httpx.get(f"{url}/userinfo", headers=bearer(owned.json()["access_token"])).status_code == 200
    # The owner's own replay is a replay: what the code produced is revoked (RFC 6749 section 10.5).
    assert exchange(url, OURS, code, verifier).status_code == 400
    assert httpx.get(f"{url}/userinfo", headers=bearer(owned.json()["access_token"])).status_code == 401
