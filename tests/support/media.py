"""Generated media for the posting tests: bytes that TikTok's format check takes for an MP4 file."""

from __future__ import annotations

import os

# An ISO base media file starts with a box: 4 bytes of size, then its type, `ftyp`, and a brand.
MP4_HEADER = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def fake_video(size: int) -> bytes:
    """`size` bytes: an MP4 `ftyp` box, then random bytes (random, so a misplaced chunk cannot go unnoticed)."""
    assert size >= len(MP4_HEADER)
    return MP4_HEADER + os.urandom(size - len(MP4_HEADER))
