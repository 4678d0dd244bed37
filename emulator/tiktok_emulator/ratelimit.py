"""Sliding 60-second request windows: per app, as TikTok applies to `/v2/user/info/` (contract §7), and per user
token, as it applies to the Content Posting API (contract §13)."""

from __future__ import annotations

from collections import deque

from tiktok_emulator.clock import Clock

WINDOW_SECONDS = 60.0


class SlidingWindow:
    def __init__(self, clock: Clock, limit: int) -> None:
        self._clock = clock
        self._limit = limit
        self._hits: deque[float] = deque()

    def allow(self) -> bool:
        """Count this request if it fits; refused requests are not counted, so a throttled app recovers."""
        now = self._clock.now()
        while self._hits and self._hits[0] <= now - WINDOW_SECONDS:
            self._hits.popleft()
        if len(self._hits) >= self._limit:
            return False
        self._hits.append(now)
        return True

    def clear(self) -> None:
        self._hits.clear()


class TokenWindows:
    """One sliding window per access token: the Content Posting API limits each user token on its own."""

    def __init__(self, clock: Clock, limit: int) -> None:
        self._clock = clock
        self._limit = limit
        self._windows: dict[str, SlidingWindow] = {}

    def allow(self, token: str) -> bool:
        window = self._windows.get(token)
        if window is None:
            window = self._windows[token] = SlidingWindow(self._clock, self._limit)
        return window.allow()

    def clear(self) -> None:
        self._windows.clear()
