"""Sending a video to TikTok's upload_url: the chunk arithmetic of TikTok's media transfer guide, reading the file
chunk by chunk, and the PUTs with their Content-Range, a failed chunk retried. Imports only httpx and the stdlib.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO

import httpx

MB = 1024 * 1024
MIN_CHUNK = 5 * MB  # TikTok's smallest chunk: a file under it goes in one piece
MAX_CHUNK = 64 * MB
MAX_CHUNKS = 1000
DEFAULT_CHUNK = 10 * MB
CONTENT_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".qt": "video/quicktime",
                 ".webm": "video/webm"}
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

MediaSource = bytes | str | os.PathLike[str] | BinaryIO


class UploadFailed(Exception):
    """TikTok's upload endpoint refused a chunk, or kept failing after the retries."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class ChunkPlan:
    """What the init announces (`source_info`) and the byte ranges the PUTs then send, in order."""

    video_size: int
    chunk_size: int
    total_chunk_count: int

    def source_info(self) -> dict[str, Any]:
        return {"source": "FILE_UPLOAD", "video_size": self.video_size, "chunk_size": self.chunk_size,
                "total_chunk_count": self.total_chunk_count}

    def ranges(self) -> Iterator[tuple[int, int]]:
        """(first, last) byte of each chunk; the last chunk takes the remainder."""
        for index in range(self.total_chunk_count):
            first = index * self.chunk_size
            last = self.video_size - 1 if index == self.total_chunk_count - 1 else first + self.chunk_size - 1
            yield first, last


def plan_chunks(video_size: int, chunk_size: int = DEFAULT_CHUNK, *, min_chunk: int = MIN_CHUNK) -> ChunkPlan:
    """TikTok's rules: chunks of `min_chunk` (5 MB) to 64 MB, the remainder joining the last chunk (so it stays
    under 128 MB), total_chunk_count = floor(video_size / chunk_size), 1 to 1,000 chunks; a file under 5 MB (or
    no larger than one chunk) goes whole, a file over 64 MB in at least two. `min_chunk` below 5 MB is only for
    an emulator set up to take smaller chunks."""
    if video_size < 1:
        raise ValueError("the video is empty")
    if not 1 <= min_chunk <= MIN_CHUNK:
        raise ValueError(f"min_chunk must be between 1 and {MIN_CHUNK} bytes")
    chunk = max(min_chunk, min(chunk_size, MAX_CHUNK))
    if video_size < min_chunk or (video_size <= chunk and video_size <= MAX_CHUNK):
        return ChunkPlan(video_size, video_size, 1)
    if video_size // chunk > MAX_CHUNKS:
        chunk = math.ceil(video_size / MAX_CHUNKS)
        if chunk > MAX_CHUNK:
            raise ValueError(f"the video is larger than TikTok takes ({MAX_CHUNKS} chunks of {MAX_CHUNK} bytes)")
    if video_size > MAX_CHUNK and video_size // chunk < 2:
        chunk = video_size // 2  # between 32 and 64 MB here, inside TikTok's range
    return ChunkPlan(video_size, chunk, video_size // chunk)


def content_type_for(name: str | None) -> str:
    """video/mp4, video/quicktime or video/webm from a file name (MP4 when there is nothing to go by)."""
    return CONTENT_TYPES.get(PurePath(name).suffix.lower(), "video/mp4") if name else "video/mp4"


class Media:
    """The video to send: bytes, a path, or a binary file open for reading (seekable); read one chunk at a time."""

    def __init__(self, source: MediaSource) -> None:
        self._owned: BinaryIO | None = None
        if isinstance(source, bytes | bytearray):
            self._file: BinaryIO = io.BytesIO(source)
            self.name: str | None = None
        elif isinstance(source, str | os.PathLike):
            self._file = self._owned = open(source, "rb")  # noqa: SIM115 - closed by close()
            self.name = os.fspath(source)
        else:
            self._file = source
            self.name = getattr(source, "name", None) if isinstance(getattr(source, "name", None), str) else None
        self._file.seek(0, os.SEEK_END)
        self.size = self._file.tell()

    def _read(self, first: int, length: int) -> bytes:
        self._file.seek(first)
        data = self._file.read(length)
        if len(data) != length:
            raise UploadFailed("the file changed while it was being sent")
        return data

    async def read(self, first: int, last: int) -> bytes:
        return await asyncio.to_thread(self._read, first, last - first + 1)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()


async def send_chunks(http: httpx.AsyncClient, upload_url: str, media: Media, plan: ChunkPlan, content_type: str, *,
                      retries: int = 3, backoff: float = 0.5, chunk_seconds: float = 300.0) -> None:
    """PUT every chunk, in order, straight to TikTok's upload_url (a one-hour capability for this upload only:
    no broker credential goes with it). A chunk that fails (no answer, 5xx, 429) is sent again up to `retries`
    times, waiting `backoff`, then twice as long each time; any other refusal stops the upload. Each PUT may take
    `chunk_seconds` (64 MB on a slow line takes a while)."""
    for first, last in plan.ranges():
        data = await media.read(first, last)
        headers = {"Content-Type": content_type, "Content-Range": f"bytes {first}-{last}/{plan.video_size}"}
        for attempt in range(retries + 1):
            try:
                response = await http.put(upload_url, content=data, headers=headers, timeout=chunk_seconds)
            except httpx.TransportError as exc:
                problem, status = f"{type(exc).__name__}", None
            else:
                if response.status_code in (200, 201, 206):
                    break
                problem, status = f"HTTP {response.status_code}: {response.text[:200]}", response.status_code
                if status not in RETRIED_STATUSES:
                    raise UploadFailed(f"TikTok refused bytes {first}-{last}: {problem}", status=status)
            if attempt == retries:
                raise UploadFailed(f"bytes {first}-{last} failed {retries + 1} times (last: {problem})",
                                   status=status)
            await asyncio.sleep(backoff * 2 ** attempt)
