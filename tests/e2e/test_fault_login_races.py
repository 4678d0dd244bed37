"""A login racing the deletion of the same account (one device deletes it while another signs in).

The login claims the user id through the open_id index, talks to TikTok, then writes the user, the grant and
the session. If the deletion runs in between, the login must end up either refused or as a brand-new account:
never a session of the deleted user (its id is denylisted, so online checks refuse its tokens while offline
verifiers accept them), nor a user record that no open_id index leads to (it has no TTL: it would stay forever).
"""

from __future__ import annotations

from typing import Any

import httpx
import redis

from tests.e2e.conftest import Stack
from tests.support.browser import Browser
from tests.support.people import SESSION_COOKIE, log_in, sign_in


def test_a_login_racing_the_deletion_of_its_account_leaves_no_orphan(stack: Stack,
                                                                     redis_sync: redis.Redis) -> None:
    url = stack.broker.url
    first = sign_in(url, "Racing Rita")
    services: Any = stack.broker.server.config.app.state.services
    records = services.login.records
    save_login = records.save_login

    async def deleted_meanwhile(user_id: str, *args: Any, **kwargs: Any) -> None:
        # The other device's deletion lands after this login claimed the user id, before it writes.
        await services.account.delete(user_id)
        records.save_login = save_login
        await save_login(user_id, *args, **kwargs)

    records.save_login = deleted_meanwhile
    browser = Browser()
    try:
        page = log_in(url, browser, "Racing Rita")
    finally:
        records.save_login = save_login
        browser.close()

    users = {key.split("{u:")[1].split("}")[0] for key in redis_sync.scan_iter("broker:{u:*}:user")}
    indexed = {redis_sync.get(key) for key in redis_sync.scan_iter("broker:oid:*")}
    assert users == indexed, "a user record that no open_id leads to"
    cookie = browser.client.cookies.get(SESSION_COOKIE)
    if page.status_code != 200:  # refused: a clear page, and no session
        assert page.status_code in (400, 409, 503) and cookie is None, page.text[:300]
        return
    check = httpx.get(f"{url}/auth/verify", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert check.status_code == 200 and check.headers["x-auth-request-user"] != first.sub, \
        "a session of the deleted account"
