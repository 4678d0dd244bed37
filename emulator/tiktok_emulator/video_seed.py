"""Each user's fake public videos: 3-5 per open_id, derived from it alone, so ids and times never change."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Newest possible upload: 2026-01-01T00:00:00Z; older ones step back a day or more from there.
_NEWEST = 1_767_225_600
_DAY = 86_400
_SUBJECTS = ("Morning routine", "Tiny kitchen pasta", "Trying the new trend", "Rainy day walk",
             "Desk setup tour", "Dance practice, take 12", "Cat vs. laptop", "Street food night")
_FORMATS = ((1080, 1920), (720, 1280), (1080, 1350))  # (width, height): portrait, as TikTok uploads are


@dataclass(frozen=True)
class SeedVideo:
    """A video's stored facts; URLs and embeds are built from these when served."""

    id: str  # TikTok video ids are 19-digit numbers sent as strings
    create_time: int  # UTC epoch seconds
    title: str
    video_description: str
    duration: int  # seconds
    width: int
    height: int
    like_count: int
    comment_count: int
    share_count: int
    view_count: int


def _digest(*parts: str) -> bytes:
    return hashlib.sha256(":".join(parts).encode()).digest()


def _number(digest: bytes, start: int, end: int) -> int:
    return int.from_bytes(digest[start:end], "big")


def seed_videos(open_id: str) -> tuple[SeedVideo, ...]:
    """This user's videos, newest first, each with a distinct create_time (the list cursor depends on it)."""
    user = _digest("videos", open_id)
    count = 3 + user[0] % 3
    videos: list[SeedVideo] = []
    create_time = _NEWEST - _number(user, 1, 4) % _DAY
    for index in range(count):
        digest = _digest("video", open_id, str(index))
        create_time -= _DAY + _number(digest, 0, 3) % (6 * _DAY)  # strictly older than the previous one
        subject = _SUBJECTS[(user[4] + index) % len(_SUBJECTS)]
        width, height = _FORMATS[digest[3] % len(_FORMATS)]
        views = 500 + _number(digest, 4, 7) % 2_000_000
        videos.append(SeedVideo(
            id="7" + f"{_number(digest, 8, 16) % 10**18:018d}",
            create_time=create_time,
            title=subject,
            video_description=f"{subject} #fyp #emulator",
            duration=5 + digest[7] % 176,
            width=width,
            height=height,
            like_count=views // (5 + digest[16] % 20),
            comment_count=views // (200 + digest[17]),
            share_count=views // (500 + digest[18] * 4),
            view_count=views,
        ))
    return tuple(videos)
