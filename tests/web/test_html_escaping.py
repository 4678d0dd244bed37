"""What a TikTok user may write into their profile cannot run in the broker's pages: every page escapes it, and
every page carries a CSP that allows no script at all and no framing."""

from __future__ import annotations

import re

from broker.config import Settings
from tests.support.inprocess import in_process

NAME = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


async def test_a_display_name_with_markup_is_shown_as_text(base_settings: Settings) -> None:
    async with in_process(base_settings) as stack:
        start = await stack.broker.get("/login")
        page = await stack.tiktok.get(start.headers["location"])
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        assert request_id is not None
        back = await stack.tiktok.post("/v2/auth/authorize/consent", data={
            "request_id": request_id.group(1), "display_name": NAME, "scope": ["user.info.basic"],
            "action": "allow"})
        assert (await stack.broker.get(back.headers["location"])).status_code == 303
        for path in ("/", "/account"):
            shown = await stack.broker.get(path)
            assert shown.status_code == 200, path
            assert "<script>alert" not in shown.text and "<img src=x" not in shown.text, path
            assert "&lt;script&gt;alert(2)&lt;/script&gt;" in shown.text, path
            csp = shown.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
            assert shown.headers["x-frame-options"] == "DENY"
