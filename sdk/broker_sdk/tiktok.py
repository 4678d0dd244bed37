"""A small async client for services that call TikTok's API through the broker's `/tiktok/...` proxy.

    async with BrokerTikTok("https://auth.example.com", token=user_access_jwt) as tiktok:
        user = await tiktok.get("/v2/user/info/", fields=["open_id", "display_name"])

Background jobs use a service credential instead of a user's JWT:
`BrokerTikTok(url, client_id="jobs", client_secret=..., subject=user_sub)`. It imports nothing else of the
broker, so services can vendor it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

TokenSource = str | Callable[[], Awaitable[str]]


class BrokerApiError(Exception):
    """A refusal by the broker or by TikTok: HTTP status, error code, message, TikTok's log_id, Retry-After."""

    def __init__(self, status: int, code: str, message: str, *, log_id: str = "",
                 retry_after: int | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.log_id = log_id
        self.retry_after = retry_after
        super().__init__(f"{status} {code}: {message}" + (f" (log_id {log_id})" if log_id else ""))

    @property
    def login_required(self) -> bool:
        """The user has to sign in again (their TikTok grant is gone, or the broker token is no longer valid)."""
        return self.status == 401


def _error_from(response: httpx.Response) -> BrokerApiError:
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    retry = response.headers.get("retry-after")
    retry_after = int(retry) if retry and retry.isdigit() else None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # TikTok's envelope
        return BrokerApiError(response.status_code, str(error.get("code", "")), str(error.get("message", "")),
                              log_id=str(error.get("log_id", "")), retry_after=retry_after)
    description = body.get("error_description", "") if isinstance(body, dict) else ""
    return BrokerApiError(response.status_code, str(error or "http_error"), str(description or response.reason_phrase),
                          log_id=response.headers.get("x-tt-logid", ""), retry_after=retry_after)


class BrokerTikTok:
    def __init__(self, broker_url: str, *, token: TokenSource | None = None, client_id: str | None = None,
                 client_secret: str | None = None, subject: str | None = None,
                 http: httpx.AsyncClient | None = None, timeout: float = 15.0) -> None:
        if (token is None) == (client_id is None):
            raise ValueError("pass either token (a broker access JWT) or client_id/client_secret/subject")
        if client_id is not None and (not client_secret or not subject):
            raise ValueError("a service credential needs client_secret and subject")
        self.base = broker_url.rstrip("/") + "/tiktok"
        self._token = token
        self._basic = httpx.BasicAuth(client_id, client_secret or "") if client_id is not None else None
        self._subject = subject
        self._owned = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def __aenter__(self) -> BrokerTikTok:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def _auth_headers(self) -> dict[str, str]:
        if self._basic is not None:
            return {"X-Broker-Subject": self._subject or ""}
        token = self._token if isinstance(self._token, str) else await self._token()  # type: ignore[misc]
        return {"Authorization": f"Bearer {token}"}

    async def request(self, method: str, path: str, *, fields: Sequence[str] | None = None,
                      params: Mapping[str, str] | None = None, json: Any = None) -> dict[str, Any]:
        """TikTok's `data` object; BrokerApiError for any refusal (including TikTok's error envelope)."""
        query = dict(params or {})
        if fields:
            query["fields"] = ",".join(fields)
        response = await self._http.request(method, self.base + "/" + path.lstrip("/"), params=query, json=json,
                                            headers=await self._auth_headers(), auth=self._basic)
        if response.status_code >= 400:
            raise _error_from(response)
        body: Any = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("code", "ok") != "ok":
            raise _error_from(response)
        data = body.get("data", {}) if isinstance(body, dict) else {}
        return data if isinstance(data, dict) else {}

    async def get(self, path: str, *, fields: Sequence[str] | None = None,
                  params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, fields=fields, params=params)

    async def post(self, path: str, *, json: Any = None, fields: Sequence[str] | None = None,
                   params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("POST", path, fields=fields, params=params, json=json)
