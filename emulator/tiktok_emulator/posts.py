"""Posts made through the Content Posting API: their records, TikTok's posting caps, and how each post ends.

A post waits for its media (chunks PUT to its upload_url, or a pull from a verified URL), is "processed" for
`publish_processing_seconds`, then settles once: PUBLISH_COMPLETE (a direct post), SEND_TO_USER_INBOX (an
upload to the inbox) or FAILED with a fail_reason, each announced by its signed `post.publish.*` webhook.
Settling is driven by a timer and, for clocks that tests move by hand, by any status fetch that finds it due.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from tiktok_emulator.clock import Clock
from tiktok_emulator.config import EmulatorConfig, TestUser
from tiktok_emulator.webhooks import WebhookSender

DAY = 86400.0
UPLOAD_URL_TTL = 3600.0  # an upload_url is valid for one hour
UNAUDITED_ACTIVE_USERS = 5  # an unaudited app may have at most 5 posting users in 24 h
DIRECT, INBOX = "DIRECT_POST", "MEDIA_UPLOAD"
FILE_UPLOAD, PULL_FROM_URL = "FILE_UPLOAD", "PULL_FROM_URL"
PUBLIC = "PUBLIC_TO_EVERYONE"
SELF_ONLY = "SELF_ONLY"
PRIVACY_LEVELS = (PUBLIC, "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", SELF_ONLY)
# The first bytes of the containers TikTok takes (MP4 and QuickTime name a box at offset 4; WebM is EBML).
ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
EBML = b"\x1a\x45\xdf\xa3"


def privacy_options(user: TestUser, audited: bool) -> list[str]:
    """What creator_info offers: public accounts can post publicly, private ones to followers; unaudited apps
    only SELF_ONLY (inferred from "posts restricted to private viewing mode")."""
    if not audited:
        return [SELF_ONLY]
    if user.private_account:
        return ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", SELF_ONLY]
    return [PUBLIC, "MUTUAL_FOLLOW_FRIENDS", SELF_ONLY]


def looks_like_video(head: bytes) -> bool:
    return head[4:8] in ISO_BOXES or head.startswith(EBML)


@dataclass
class Post:
    publish_id: str
    open_id: str
    media: str  # "video" or "photo"
    mode: str  # DIRECT_POST, or MEDIA_UPLOAD for the inbox
    source: str  # FILE_UPLOAD or PULL_FROM_URL
    privacy_level: str
    created_at: float
    video_size: int = 0
    chunk_size: int = 0
    total_chunk_count: int = 0
    upload_id: str = ""
    upload_token: str = ""
    uploaded_bytes: int = 0
    chunks: int = 0  # chunks received so far
    last_range: tuple[int, int] | None = None
    head: bytes = b""  # the file's first bytes, for the format check
    received: Any = field(default_factory=hashlib.sha256, repr=False)  # digest of the bytes so far, in order
    ready_at: float | None = None  # all media in: processing started
    status: str = ""
    fail_reason: str = ""
    post_id: str = ""
    taken_down: bool = False

    @property
    def publish_type(self) -> str:
        return "DIRECT_PUBLISH" if self.mode == DIRECT else "INBOX_SHARE"

    @property
    def settled(self) -> bool:
        return self.status in ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX", "FAILED")

    def status_data(self) -> dict[str, Any]:
        """The `data` of /v2/post/publish/status/fetch/ (TikTok's spelling: publicaly)."""
        data: dict[str, Any] = {"status": self.status}
        if self.fail_reason:
            data["fail_reason"] = self.fail_reason
        data["publicaly_available_post_id"] = [int(self.post_id)] if self.post_id and not self.taken_down else []
        if self.source == FILE_UPLOAD:
            data["uploaded_bytes"] = self.uploaded_bytes
        else:
            data["downloaded_bytes"] = 0  # the emulator does not fetch pulled media
        return data

    def to_json(self) -> dict[str, Any]:
        return {"publish_id": self.publish_id, "open_id": self.open_id, "media": self.media, "mode": self.mode,
                "source": self.source, "privacy_level": self.privacy_level, "video_size": self.video_size,
                "chunk_size": self.chunk_size, "total_chunk_count": self.total_chunk_count,
                "chunks_received": self.chunks, "sha256": self.received.hexdigest(), "post_id": self.post_id,
                **self.status_data()}


def _publish_id(media: str, mode: str, source: str) -> str:
    """TikTok's shape, e.g. `v_pub_file~v2.7350941822334`."""
    kind = "pub" if mode == DIRECT else "inbox"
    origin = "file" if source == FILE_UPLOAD else "url"
    return f"{media[0]}_{kind}_{origin}~v2.{secrets.randbelow(10**13):013d}"


class PostBook:
    def __init__(self, config: EmulatorConfig, clock: Clock, webhooks: WebhookSender) -> None:
        self._config = config
        self._clock = clock
        self._webhooks = webhooks
        self._posts: dict[str, Post] = {}
        self._uploads: dict[str, str] = {}  # upload_id -> publish_id
        self._timers: set[asyncio.Task[None]] = set()

    def refusal(self, user: TestUser) -> tuple[str, str] | None:
        """TikTok's caps on who may post now: (error code, message), or None."""
        now = self._clock.now()
        recent = [p for p in self._posts.values() if now - p.created_at < DAY]
        if not self._config.audited:
            if not user.private_account:
                return ("unaudited_client_can_only_post_to_private_accounts",
                        "Unaudited clients can only post to a private account.")
            posters = {p.open_id for p in recent}
            if user.open_id not in posters and len(posters) >= UNAUDITED_ACTIVE_USERS:
                return "reached_active_user_cap", "The daily quota of active posting users has been reached."
        if sum(p.open_id == user.open_id for p in recent) >= self._config.daily_post_cap:
            return "spam_risk_too_many_posts", "The user has reached the maximum number of posts for today."
        return None

    def create(self, *, open_id: str, media: str, mode: str, source: str, privacy_level: str,
               video_size: int = 0, chunk_size: int = 0, total_chunk_count: int = 0) -> Post:
        post = Post(_publish_id(media, mode, source), open_id, media, mode, source, privacy_level,
                    self._clock.now(), video_size, chunk_size, total_chunk_count)
        if source == FILE_UPLOAD:
            post.upload_id, post.upload_token = secrets.token_hex(8), secrets.token_urlsafe(24)
            post.status = "PROCESSING_UPLOAD"
            self._uploads[post.upload_id] = post.publish_id
        self._posts[post.publish_id] = post
        if source == PULL_FROM_URL:
            post.status = "PROCESSING_DOWNLOAD"
            self.media_ready(post)
        return post

    def get(self, publish_id: str) -> Post | None:
        return self._posts.get(publish_id)

    def by_upload(self, upload_id: str) -> Post | None:
        return self._posts.get(self._uploads.get(upload_id, ""))

    def all(self) -> list[Post]:
        return list(self._posts.values())

    def upload_url(self, post: Post) -> str:
        base = self._config.public_url.rstrip("/")
        return f"{base}/video/?upload_id={post.upload_id}&upload_token={post.upload_token}"

    def media_ready(self, post: Post) -> None:
        """Every byte is in: processing starts, and the post settles when it is done."""
        post.ready_at = self._clock.now()
        delay = self._config.publish_processing_seconds
        if delay <= 0:
            self.settle(post)
            return
        timer = asyncio.create_task(self._settle_later(post, delay))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _settle_later(self, post: Post, delay: float) -> None:
        await asyncio.sleep(delay)
        self.settle(post)

    def settle_if_due(self, post: Post) -> None:
        if post.ready_at is not None and self._clock.now() >= post.ready_at + self._config.publish_processing_seconds:
            self.settle(post)

    def settle(self, post: Post, failure: str | None = None) -> None:
        """End the post once, and announce it."""
        if post.settled:
            return
        if failure is None and post.source == FILE_UPLOAD and not looks_like_video(post.head):
            failure = "file_format_check_failed"
        content: dict[str, object] = {"publish_id": post.publish_id, "publish_type": post.publish_type}
        if failure is not None:
            post.status, post.fail_reason = "FAILED", failure
            self._webhooks.send("post.publish.failed", post.open_id, {**content, "reason": failure})
        elif post.mode == INBOX:
            post.status = "SEND_TO_USER_INBOX"
            self._webhooks.send("post.publish.inbox_delivered", post.open_id, content)
        else:
            post.status = "PUBLISH_COMPLETE"
            self._webhooks.send("post.publish.complete", post.open_id, content)
            if post.privacy_level == PUBLIC:  # only public posts get a post_id, once moderation passed
                post.post_id = f"7{secrets.randbelow(10**18):018d}"
                self._webhooks.send("post.publish.publicly_available", post.open_id,
                                    {**content, "post_id": post.post_id})

    def take_down(self, post: Post) -> bool:
        """A public post stops being public (deleted, made private, moderated)."""
        if not post.post_id or post.taken_down:
            return False
        post.taken_down = True
        self._webhooks.send("post.publish.no_longer_publicaly_available", post.open_id,
                            {"publish_id": post.publish_id, "publish_type": post.publish_type,
                             "post_id": post.post_id})
        return True

    def clear(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._posts.clear()
        self._uploads.clear()

    async def aclose(self) -> None:
        timers = list(self._timers)
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
