"""The people who can log in: seeded test users, names typed on the consent page, and their profile fields."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from tiktok_emulator.config import BASIC, PROFILE, STATS, EmulatorConfig, TestUser
from tiktok_emulator.ids import derived_open_id, derived_union_id

# Contract §5.1: which scope each user/info field needs since the 2024-02-29 migration.
FIELD_SCOPES: dict[str, str] = {
    "open_id": BASIC,
    "union_id": BASIC,
    "avatar_url": BASIC,
    "avatar_url_100": BASIC,
    "avatar_large_url": BASIC,
    "display_name": BASIC,
    "bio_description": PROFILE,
    "profile_deep_link": PROFILE,
    "is_verified": PROFILE,
    "username": PROFILE,
    "follower_count": STATS,
    "following_count": STATS,
    "likes_count": STATS,
    "video_count": STATS,
}
MAX_DISPLAY_NAME = 64


def _handle(display_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", ".", display_name.lower()).strip(".")
    return slug or "user"


class UserDirectory:
    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._typed: dict[str, TestUser] = {}

    def seeded(self) -> tuple[TestUser, ...]:
        return self._config.users

    def typed(self) -> tuple[TestUser, ...]:
        return tuple(self._typed.values())

    def get(self, open_id: str) -> TestUser | None:
        for user in self._config.users:
            if user.open_id == open_id:
                return user
        return self._typed.get(open_id)

    def from_name(self, display_name: str) -> TestUser:
        """Create or reuse the typed user for this name; its ids are derived, so stable across restarts."""
        open_id = derived_open_id(self._config.client_key, display_name)
        user = self._typed.get(open_id)
        if user is None:
            user = TestUser(
                open_id=open_id,
                union_id=derived_union_id(display_name),
                display_name=display_name,
                username=_handle(display_name),
            )
            self._typed[open_id] = user
        return user

    def clear_typed(self) -> None:
        self._typed.clear()

    def public_profile(self, user: TestUser) -> TestUser:
        """Fill the fields a seeded user left empty with URLs served by this emulator."""
        base = self._config.public_url.rstrip("/")
        avatar = f"{base}/_emulator/avatars/{user.open_id}.svg"
        return replace(
            user,
            avatar_url=user.avatar_url or f"{avatar}?size=168",
            avatar_url_100=user.avatar_url_100 or f"{avatar}?size=100",
            avatar_large_url=user.avatar_large_url or f"{avatar}?size=1080",
            profile_deep_link=user.profile_deep_link or f"{base}/#{user.username}",
        )

    def fields(self, user: TestUser, names: list[str]) -> dict[str, Any]:
        """Only the requested, known fields; unknown names (e.g. `email`) are silently dropped, as TikTok does."""
        profile = self.public_profile(user)
        return {name: getattr(profile, name) for name in names if name in FIELD_SCOPES}
