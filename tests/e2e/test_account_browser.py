"""The account page in a real headless Chromium: profile, end another session, log out, log in, delete."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import Stack
from tests.support.chromium import CHROMIUM_ARGS, chromium_path

playwright = pytest.importorskip("playwright.sync_api")


def sign_in(page, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{stack.broker.url}/")
    page.get_by_role("link", name="Continue with TikTok").click()
    if page.url.startswith(stack.emulator.url):  # consent unless TikTok remembers this browser's approval
        page.get_by_role("button", name="Allow").click()
    page.wait_for_url(f"{stack.broker.url}/")
    assert page.get_by_role("heading", name="You are signed in with TikTok").is_visible()


def test_account_page_end_to_end(stack: Stack) -> None:
    executable = chromium_path()
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        laptop = browser.new_context(user_agent="Laptop browser").new_page()
        phone = browser.new_context(user_agent="Phone browser").new_page()
        sign_in(phone, stack)
        sign_in(laptop, stack)

        laptop.get_by_role("link", name="Your account").click()
        laptop.wait_for_url(f"{stack.broker.url}/account")
        assert laptop.get_by_role("heading", name="Your account").is_visible()
        assert "Mara Example" in laptop.inner_text("body")
        rows = laptop.get_by_role("row")
        assert rows.filter(has_text="Laptop browser").filter(has_text="(this browser)").count() == 1
        phone_row = rows.filter(has_text="Phone browser")
        assert phone_row.count() == 1

        phone_row.get_by_role("button", name=re.compile("End")).click()
        laptop.wait_for_url(f"{stack.broker.url}/account")
        assert laptop.get_by_role("row").filter(has_text="Phone browser").count() == 0
        phone.goto(f"{stack.broker.url}/")
        assert phone.get_by_role("link", name="Continue with TikTok").is_visible()  # the phone was signed out

        laptop.get_by_role("button", name="Log out", exact=True).click()
        laptop.wait_for_url(f"{stack.broker.url}/")
        assert laptop.get_by_role("link", name="Continue with TikTok").is_visible()

        sign_in(laptop, stack)
        laptop.goto(f"{stack.broker.url}/account")
        laptop.get_by_role("link", name="Delete my account").click()
        assert laptop.get_by_role("heading", name="Delete your account?").is_visible()
        laptop.get_by_role("button", name="Yes, delete my account").click()
        assert laptop.get_by_role("heading", name="Your account has been deleted").is_visible()
        receipt = laptop.inner_text("body")
        assert "Receipt" in receipt and "revoked at TikTok" in receipt

        laptop.goto(f"{stack.broker.url}/account")
        assert "/login" in laptop.url or laptop.url.startswith(stack.emulator.url)
        browser.close()
    assert [c["endpoint"] for c in stack.tiktok.calls].count("revoke") == 2  # the logout, then the deletion
