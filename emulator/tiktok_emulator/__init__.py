"""A faithful in-memory TikTok (Login Kit OAuth v2, the Display API, the Content Posting API, webhooks) for
`broker dev` and the test suite."""

from tiktok_emulator.app import create_emulator_app
from tiktok_emulator.config import EmulatorConfig, TestUser

__all__ = ["EmulatorConfig", "TestUser", "create_emulator_app"]
