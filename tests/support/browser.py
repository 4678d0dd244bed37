"""A browser stand-in over real HTTP: keeps cookies, follows redirects on loopback, fills the consent form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import httpx

REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')
CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10, follow_redirects=False))
    history: list[httpx.Response] = field(default_factory=list)

    def get(self, url: str, *, follow: bool = True) -> httpx.Response:
        return self._follow(self.client.get(url), follow)

    def post_form(self, url: str, data: dict[str, str | list[str]], *, follow: bool = True) -> httpx.Response:
        return self._follow(self.client.post(url, data=data), follow)

    def _follow(self, response: httpx.Response, follow: bool) -> httpx.Response:
        self.history.append(response)
        hops = 0
        while follow and response.is_redirect and hops < 10:
            target = response.next_request
            assert target is not None
            if target.url.host not in ("127.0.0.1", "localhost"):
                break  # a real browser would leave for the app; the test inspects Location instead
            response = self.client.send(target)
            self.history.append(response)
            hops += 1
        return response

    def consent(self, page: httpx.Response, *, user: str = "", display_name: str = "",
                scopes: tuple[str, ...] = ("user.info.basic",), action: str = "allow",
                follow: bool = True) -> httpx.Response:
        """Answer the emulator's consent page as a person would."""
        match = REQUEST_ID.search(page.text)
        assert match, "not a consent page"
        action_url = str(page.url.copy_with(query=None)).rstrip("/") + "/consent"
        data: dict[str, str | list[str]] = {"request_id": match.group(1), "user": user,
                                            "display_name": display_name, "scope": list(scopes), "action": action}
        return self.post_form(action_url, data, follow=follow)

    def app_consent(self, page: httpx.Response, *, allow: bool = True, follow: bool = True) -> httpx.Response:
        """Answer the broker's own consent page for a third-party app (Allow or Deny), as a person would."""
        request_id, token = REQUEST_ID.search(page.text), CSRF_TOKEN.search(page.text)
        assert request_id and token and "/authorize/consent" in page.text, "not the broker's consent page"
        origin = f"{page.url.scheme}://{page.url.netloc.decode()}"
        response = self.client.post(f"{origin}/authorize/consent", headers={"Origin": origin}, data={
            "request_id": request_id.group(1), "csrf_token": token.group(1), "action": "allow" if allow else "deny"})
        return self._follow(response, follow)

    @staticmethod
    def is_app_consent(page: httpx.Response) -> bool:
        return page.status_code == 200 and "/authorize/consent" in page.text

    def close(self) -> None:
        self.client.close()


def query_of(url: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}
