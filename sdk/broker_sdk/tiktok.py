"""A small async client for services that call TikTok's API through the broker's `/tiktok/...` proxy.

    async with BrokerTikTok("https://auth.example.com", token=user_access_jwt) as tiktok:
        user = await tiktok.get("/v2/user/info/", fields=["open_id", "display_name"])
        result = await tiktok.post_video(None, "clip.mp4", {"privacy_level": "SELF_ONLY", "title": "Hi"})

Background jobs use a service credential instead of a user's JWT, naming the user per call or once:
`BrokerTikTok(url, client_id="jobs", client_secret=..., subject=user_sub)`. It imports only httpx and the
standard library (tiktok_media.py is its upload half), so services can vendor it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from broker_sdk.http import cookieless_client
from broker_sdk.tiktok_media import DEFAULT_CHUNK, MIN_CHUNK, Media, MediaSource, content_type_for, plan_chunks
from broker_sdk.tiktok_media import send_chunks as _send_chunks

TokenSource = str | Callable[[], Awaitable[str]]
PUBLISH = "/v2/post/publish"
FINAL_STATUSES = frozenset({"PUBLISH_COMPLETE", "SEND_TO_USER_INBOX", "FAILED"})


@dataclass(frozen=True)
class PostResult:
    """Where a post stands: TikTok's status fetch, with the publish_id it is about."""

    publish_id: str
    status: str  # PROCESSING_UPLOAD, PROCESSING_DOWNLOAD, SEND_TO_USER_INBOX, PUBLISH_COMPLETE or FAILED
    fail_reason: str = ""
    post_ids: tuple[str, ...] = ()  # TikTok's publicaly_available_post_id, as strings
    uploaded_bytes: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """The post has ended: published, in the user's inbox, or failed."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_status(cls, publish_id: str, data: Mapping[str, Any]) -> PostResult:
        post_ids = data.get("publicaly_available_post_id") or []
        uploaded = data.get("uploaded_bytes")
        return cls(publish_id, str(data.get("status", "")), str(data.get("fail_reason", "") or ""),
                   tuple(str(p) for p in post_ids) if isinstance(post_ids, list) else (),
                   uploaded if isinstance(uploaded, int) else None, dict(data))


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
            raise ValueError("pass either token (a broker access JWT) or client_id/client_secret")
        if client_id is not None and not client_secret:
            raise ValueError("a service credential needs client_secret (and a subject, here or per call)")
        self.base = broker_url.rstrip("/") + "/tiktok"
        self._token = token
        self._basic = httpx.BasicAuth(client_id, client_secret or "") if client_id is not None else None
        self._subject = subject
        self._owned = http is None
        self._http = http or cookieless_client(timeout=timeout)

    async def __aenter__(self) -> BrokerTikTok:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def _auth(self, user: str | None) -> tuple[dict[str, str], httpx.BasicAuth | None]:
        """Headers and Basic credential for a call made for `user`: a broker access JWT, a `sub` (with the service
        credential), or None for the token or subject this client was made with."""
        if user is not None and user.count(".") == 2:  # a JWT: header.payload.signature
            return {"Authorization": f"Bearer {user}"}, None
        if user is not None or self._basic is not None:
            subject = user or self._subject
            if self._basic is None or not subject:
                raise ValueError("name the user: a broker access token, or a sub with a service credential")
            return {"X-Broker-Subject": subject}, self._basic
        token = self._token if isinstance(self._token, str) else await self._token()  # type: ignore[misc]
        return {"Authorization": f"Bearer {token}"}, None

    async def request(self, method: str, path: str, *, fields: Sequence[str] | None = None,
                      params: Mapping[str, str] | None = None, json: Any = None,
                      user: str | None = None) -> dict[str, Any]:
        """TikTok's `data` object; BrokerApiError for any refusal (including TikTok's error envelope)."""
        query = dict(params or {})
        if fields:
            query["fields"] = ",".join(fields)
        headers, auth = await self._auth(user)
        response = await self._http.request(method, self.base + "/" + path.lstrip("/"), params=query, json=json,
                                            headers=headers, auth=auth)
        if response.status_code >= 400:
            raise _error_from(response)
        body: Any = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("code", "ok") != "ok":
            raise _error_from(response)
        data = body.get("data", {}) if isinstance(body, dict) else {}
        return data if isinstance(data, dict) else {}

    async def get(self, path: str, *, fields: Sequence[str] | None = None,
                  params: Mapping[str, str] | None = None, user: str | None = None) -> dict[str, Any]:
        return await self.request("GET", path, fields=fields, params=params, user=user)

    async def post(self, path: str, *, json: Any = None, fields: Sequence[str] | None = None,
                   params: Mapping[str, str] | None = None, user: str | None = None) -> dict[str, Any]:
        return await self.request("POST", path, fields=fields, params=params, json=json, user=user)

    # -- posting content (TikTok's Content Posting API) --

    async def creator_info(self, subject_or_token: str | None) -> dict[str, Any]:
        """The creator's nickname, username, avatar, privacy_level_options, interaction settings and longest video."""
        return await self.post(f"{PUBLISH}/creator_info/query/", user=subject_or_token)

    async def post_video(self, subject_or_token: str | None, file: MediaSource, post_info: Mapping[str, Any], *,
                         chunk_size: int = DEFAULT_CHUNK, min_chunk_size: int = MIN_CHUNK,
                         content_type: str | None = None, wait: bool = True, poll_interval: float = 5.0,
                         wait_seconds: float = 600.0, upload_retries: int = 3) -> PostResult:
        """Post a video to the user's profile: creator info (the privacy level must be one the creator offers),
        the init with TikTok's chunk arithmetic, the chunks PUT straight to TikTok's upload_url (a failed chunk is
        sent again), then the status polled until the post ends (unless `wait=False`) or `wait_seconds` pass.

        `file` is bytes, a path or a binary file open for reading; `post_info` is TikTok's (`privacy_level`
        required; `title`, `disable_duet`, `disable_stitch`, `disable_comment`, `video_cover_timestamp_ms`,
        `brand_content_toggle`, `brand_organic_toggle`, `is_aigc`). `min_chunk_size` lowers TikTok's 5 MB chunk
        minimum for an emulator set up for it only. Refusals raise BrokerApiError, a failed upload UploadFailed;
        a post that fails at TikTok is answered with status FAILED and its fail_reason."""
        await self._check_privacy(subject_or_token, post_info)
        return await self._upload(subject_or_token, f"{PUBLISH}/video/init/", {"post_info": dict(post_info)}, file,
                                  chunk_size=chunk_size, min_chunk_size=min_chunk_size, content_type=content_type,
                                  wait=wait, poll_interval=poll_interval, wait_seconds=wait_seconds,
                                  retries=upload_retries)

    async def upload_to_inbox(self, subject_or_token: str | None, file: MediaSource, *,
                              chunk_size: int = DEFAULT_CHUNK, min_chunk_size: int = MIN_CHUNK,
                              content_type: str | None = None, wait: bool = True, poll_interval: float = 5.0,
                              wait_seconds: float = 600.0, upload_retries: int = 3) -> PostResult:
        """Send a video to the user's TikTok inbox as a draft (scope video.upload); the user finishes the post in
        TikTok. Ends at SEND_TO_USER_INBOX (or FAILED). Arguments as for post_video."""
        return await self._upload(subject_or_token, f"{PUBLISH}/inbox/video/init/", {}, file, chunk_size=chunk_size,
                                  min_chunk_size=min_chunk_size, content_type=content_type, wait=wait,
                                  poll_interval=poll_interval, wait_seconds=wait_seconds, retries=upload_retries)

    async def post_photos(self, subject_or_token: str | None, photo_urls: Sequence[str], post_info: Mapping[str, Any],
                          *, post_mode: str = "DIRECT_POST", cover_index: int = 0, wait: bool = True,
                          poll_interval: float = 5.0, wait_seconds: float = 600.0) -> PostResult:
        """A photo post (1 to 35 image URLs under a prefix verified for your TikTok app, which TikTok pulls):
        DIRECT_POST to the profile (video.publish; the privacy level is checked against creator info first) or
        MEDIA_UPLOAD to the inbox (video.upload). `post_info`: title (90), description (4,000), privacy_level..."""
        if post_mode == "DIRECT_POST":
            await self._check_privacy(subject_or_token, post_info)
        body = {"media_type": "PHOTO", "post_mode": post_mode, "post_info": dict(post_info),
                "source_info": {"source": "PULL_FROM_URL", "photo_images": list(photo_urls),
                                "photo_cover_index": cover_index}}
        data = await self.post(f"{PUBLISH}/content/init/", json=body, user=subject_or_token)
        publish_id = str(data["publish_id"])
        if not wait:
            return PostResult(publish_id, "PROCESSING_DOWNLOAD")
        return await self.wait_for_post(subject_or_token, publish_id, poll_interval=poll_interval,
                                        wait_seconds=wait_seconds)

    async def post_status(self, subject_or_token: str | None, publish_id: str) -> PostResult:
        data = await self.post(f"{PUBLISH}/status/fetch/", json={"publish_id": publish_id}, user=subject_or_token)
        return PostResult.from_status(publish_id, data)

    async def wait_for_post(self, subject_or_token: str | None, publish_id: str, *, poll_interval: float = 5.0,
                            wait_seconds: float = 600.0) -> PostResult:
        """Poll the status until the post ends or `wait_seconds` pass (then the last status, not `done`). TikTok
        allows 30 status fetches a minute per user: a 429 waits its Retry-After."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                result = await self.post_status(subject_or_token, publish_id)
            except BrokerApiError as exc:
                if exc.status != 429 or time.monotonic() + (exc.retry_after or poll_interval) > deadline:
                    raise
                await asyncio.sleep(exc.retry_after or poll_interval)
                continue
            if result.done or time.monotonic() + poll_interval > deadline:
                return result
            await asyncio.sleep(poll_interval)

    async def _check_privacy(self, user: str | None, post_info: Mapping[str, Any]) -> None:
        """TikTok wants creator info read before a direct post, and the privacy level one of the creator's."""
        options = (await self.creator_info(user)).get("privacy_level_options") or []
        if post_info.get("privacy_level") not in options:
            raise BrokerApiError(400, "privacy_level_option_mismatch",
                                 f"privacy_level must be one of the creator's options: {', '.join(map(str, options))}")

    async def _upload(self, user: str | None, init_path: str, body: dict[str, Any], file: MediaSource, *,
                      chunk_size: int, min_chunk_size: int, content_type: str | None, wait: bool,
                      poll_interval: float, wait_seconds: float, retries: int) -> PostResult:
        media = Media(file)
        try:
            plan = plan_chunks(media.size, chunk_size, min_chunk=min_chunk_size)
            data = await self.post(init_path, json={**body, "source_info": plan.source_info()}, user=user)
            publish_id, upload_url = str(data["publish_id"]), str(data["upload_url"])
            await _send_chunks(self._http, upload_url, media, plan, content_type or content_type_for(media.name),
                               retries=retries)
        finally:
            media.close()
        if not wait:
            return PostResult(publish_id, "PROCESSING_UPLOAD", uploaded_bytes=plan.video_size)
        return await self.wait_for_post(user, publish_id, poll_interval=poll_interval, wait_seconds=wait_seconds)
