"""The emulated TikTok app's registration and behaviour flags, plus the seeded test users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tiktok_emulator.redirects import registration_problem, sdk_registration_problem

Platform = Literal["web", "desktop"]
TtlProfile = Literal["2026", "legacy"]

BASIC = "user.info.basic"
PROFILE = "user.info.profile"
STATS = "user.info.stats"
VIDEO_PUBLISH = "video.publish"
VIDEO_UPLOAD = "video.upload"
MB = 1024 * 1024
MIN_CHUNK = 5 * MB  # TikTok's smallest chunk (contract §13); files under it go in one piece

# (access-token TTL, refresh-token TTL) in seconds; contract §3.5: Nov-2026 docs vs the older v2 docs.
TTL_PROFILES: dict[str, tuple[int, int]] = {
    "2026": (7200, 15_552_000),
    "legacy": (86_400, 31_536_000),
}
CLIENT_TOKEN_TTL = 7200
MAX_REDIRECT_URIS = 10


@dataclass(frozen=True)
class TestUser:
    """A TikTok account a person can pick on the consent page. Empty avatar fields are served by the emulator."""

    __test__ = False  # not a pytest test class, despite the name

    open_id: str
    union_id: str
    display_name: str
    username: str
    bio_description: str = ""
    is_verified: bool = False
    follower_count: int = 0
    following_count: int = 0
    likes_count: int = 0
    video_count: int = 0
    avatar_url: str = ""
    avatar_url_100: str = ""
    avatar_large_url: str = ""
    profile_deep_link: str = ""
    private_account: bool = False  # decides the privacy levels TikTok offers for posts (contract §13)
    max_video_post_duration_sec: int = 600


DEFAULT_USERS: tuple[TestUser, ...] = (
    TestUser(
        open_id="7c1e2d34-5f6a-4b7c-8d9e-0a1b2c3d4e5f",
        union_id="e9d8c7b6-a5f4-4e3d-9c2b-1a0f9e8d7c6b",
        display_name="Mara Example",
        username="mara.example",
        bio_description="Dances badly, films it anyway.",
        is_verified=True,
        follower_count=120_400,
        following_count=311,
        likes_count=2_048_000,
        video_count=187,
    ),
    TestUser(
        open_id="3f9a6b1c-2d4e-4f50-8a71-b2c3d4e5f607",
        union_id="5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
        display_name="Jun Tester",
        username="jun.tester",
        bio_description="Cooking in a tiny kitchen.",
        follower_count=842,
        following_count=95,
        likes_count=10_233,
        video_count=41,
    ),
    TestUser(
        open_id="a0b1c2d3-e4f5-4a6b-9c8d-7e6f5a4b3c2d",
        union_id="0f1e2d3c-4b5a-4968-a7b6-c5d4e3f2a1b0",
        display_name="Ada Sandbox",
        username="ada.sandbox",
        private_account=True,
    ),
)


@dataclass(frozen=True)
class EmulatorConfig:
    """One registered TikTok app (the emulator hosts exactly one) and the knobs that pick contested behaviour."""

    client_key: str = "emulator-client-key"
    client_secret: str = "emulator-client-secret"  # noqa: S105 - a published fake, not a credential
    platform: Platform = "web"
    # Exact-match registered redirect URIs (contract §2.3). Desktop may use a `:*` port wildcard.
    # Deviation: for "web" the emulator also accepts http://127.0.0.1 / localhost registrations,
    # which TikTok refuses (https public hosts only), because the emulator runs on a laptop.
    redirect_uris: tuple[str, ...] = ()
    # The app's iOS and Android builds (contract §12): their https universal links / app links, registered at
    # TikTok beside the web redirect URIs. A code for one of them is an SDK-style code (see sdk.py).
    sdk_redirect_uris: tuple[str, ...] = ()
    approved_scopes: tuple[str, ...] = (BASIC, PROFILE, STATS, "video.list", VIDEO_PUBLISH, VIDEO_UPLOAD)
    users: tuple[TestUser, ...] = DEFAULT_USERS
    require_pkce_web: bool = True
    accept_base64url_challenge: bool = False
    oauth_error_status: int = 200
    ttl_profile: TtlProfile = "2026"
    code_ttl: int = 600
    refresh_resets_deadline: bool = False
    old_access_token_survives_refresh: bool = True
    webhook_url: str | None = None
    # TikTok only says "exponential backoff for up to 72 hours"; tests compress this schedule.
    webhook_retry_initial: float = 1.0
    webhook_retry_factor: float = 2.0
    webhook_retry_horizon: float = 72 * 3600.0
    webhook_duplicate_delivery: bool = False
    webhook_timeout: float = 5.0
    rate_limit_per_minute: int = 600
    public_url: str = "http://127.0.0.1:8081"
    consent_ttl: int = 1800
    # Content Posting. An audited app posts as asked; an unaudited one gets TikTok's restrictions (at most 5
    # posting users per 24 h, private accounts only, SELF_ONLY posts).
    audited: bool = True
    # TikTok's 5 MB minimum chunk; tests may lower it (never raise it) to post small files in several chunks.
    min_chunk_bytes: int = MIN_CHUNK
    # How long TikTok "processes" an upload or a pull before the post ends (PUBLISH_COMPLETE, inbox, FAILED).
    publish_processing_seconds: float = 2.0
    daily_post_cap: int = 15  # posts per creator per 24 h ("typically around 15")
    # PULL_FROM_URL sources and photo URLs must start with one of these (TikTok: a verified domain or prefix).
    verified_url_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid EmulatorConfig: " + "; ".join(problems))

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.platform not in ("web", "desktop"):
            found.append(f"platform must be 'web' or 'desktop', not {self.platform!r}")
        if self.ttl_profile not in TTL_PROFILES:
            found.append(f"ttl_profile must be one of {sorted(TTL_PROFILES)}, not {self.ttl_profile!r}")
        if self.oauth_error_status not in (200, 400, 401):
            found.append("oauth_error_status must be 200, 400 or 401")
        if len(self.redirect_uris) > MAX_REDIRECT_URIS:
            found.append(f"at most {MAX_REDIRECT_URIS} redirect_uris may be registered")
        for uri in self.redirect_uris:
            problem = registration_problem(uri, self.platform)
            if problem:
                found.append(f"redirect_uri {uri!r}: {problem}")
        for uri in self.sdk_redirect_uris:
            problem = sdk_registration_problem(uri)
            if problem:
                found.append(f"sdk_redirect_uri {uri!r}: {problem}")
        if len(self.sdk_redirect_uris) > MAX_REDIRECT_URIS:
            found.append(f"at most {MAX_REDIRECT_URIS} sdk_redirect_uris may be registered")
        if BASIC not in self.approved_scopes:
            found.append(f"approved_scopes must include {BASIC} (Login Kit adds it to every app)")
        if len({u.open_id for u in self.users}) != len(self.users):
            found.append("test users must have distinct open_ids")
        if self.code_ttl <= 0 or self.rate_limit_per_minute <= 0:
            found.append("code_ttl and rate_limit_per_minute must be positive")
        if self.webhook_retry_initial <= 0 or self.webhook_retry_factor < 1:
            found.append("webhook retry schedule needs initial > 0 and factor >= 1")
        if not 1 <= self.min_chunk_bytes <= MIN_CHUNK:
            found.append(f"min_chunk_bytes must be between 1 and TikTok's {MIN_CHUNK} bytes")
        if self.publish_processing_seconds < 0 or self.daily_post_cap <= 0:
            found.append("publish_processing_seconds must be >= 0 and daily_post_cap positive")
        return found

    @property
    def access_ttl(self) -> int:
        return TTL_PROFILES[self.ttl_profile][0]

    @property
    def refresh_ttl(self) -> int:
        return TTL_PROFILES[self.ttl_profile][1]
