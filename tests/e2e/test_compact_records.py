"""Session and family records stay small: Redis keeps them as listpacks (every value within 64 bytes), while the
JWT still carries the avatar (read from the user record) and the account page still names the device."""

from __future__ import annotations

import jwt
import redis

from broker.flows.tokens import SESSION_GRANT
from tests.e2e.conftest import ALICE, Stack
from tests.support.browser import Browser

CHROME_ON_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/130.0.0.0 Safari/537.36")


def test_records_are_compact_and_nothing_is_lost(stack: Stack, redis_sync: redis.Redis) -> None:
    browser = Browser()
    browser.client.headers["User-Agent"] = CHROME_ON_WINDOWS
    try:
        consent = browser.get(f"{stack.broker.url}/login")
        assert browser.consent(consent, user=ALICE).status_code == 200
        (session_key,) = redis_sync.keys("broker:{u:*}:s:*")
        assert redis_sync.object("encoding", session_key) == "listpack"
        assert "picture" not in redis_sync.hgetall(session_key)
        (user_key,) = redis_sync.keys("broker:{u:*}:user")
        avatar = redis_sync.hget(user_key, "avatar_url")
        assert avatar and len(avatar) > 64  # long enough that copying it would have cost the listpack

        token = browser.client.get(f"{stack.broker.url}/auth/verify").headers["authorization"].removeprefix("Bearer ")
        assert jwt.decode(token, options={"verify_signature": False})["picture"] == avatar
        assert "Chrome on Windows" in browser.client.get(f"{stack.broker.url}/account").text

        pair = browser.client.post(f"{stack.broker.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                                   headers={"Origin": stack.broker.url}).json()
        pair = browser.client.post(f"{stack.broker.url}/oauth/token",
                                   data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}).json()
        assert jwt.decode(pair["access_token"], options={"verify_signature": False})["picture"] == avatar
        family_keys = [key for key in redis_sync.keys("broker:{u:*}:s:*") if key != session_key]
        assert len(family_keys) == 1
        assert redis_sync.object("encoding", family_keys[0]) == "listpack"
        assert len(redis_sync.keys("broker:{u:*}:rtg:*")) == 1  # the grace copy of the last rotation

        # Ending the session ends its family and the family's grace copy, found without a stored key name.
        ended = browser.client.post(f"{stack.broker.url}/logout", headers={"Origin": stack.broker.url})
        assert ended.status_code == 303
        assert redis_sync.keys("broker:{u:*}:s:*") == []
        assert redis_sync.keys("broker:{u:*}:rtg:*") == []
    finally:
        browser.close()
