"""A short, human label for a User-Agent ("Firefox on Android"), shown on the account page beside each session.

Sessions store this label instead of the User-Agent itself: it is what a person recognises, and it keeps the
session record small (see store/records.py, COMPACT_VALUE).
"""

from __future__ import annotations

MAX_LABEL = 64

# First match wins, so the more specific names come before the ones they contain (Edge and Opera say Chrome,
# Chrome says Safari, iPad says Mac OS X).
BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("SamsungBrowser/", "Samsung Internet"), ("Firefox/", "Firefox"),
            ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"), ("Chrome/", "Chrome"), ("Chromium/", "Chromium"),
            ("Safari/", "Safari"), ("curl/", "curl"), ("okhttp/", "okhttp"), ("python-httpx/", "httpx"))
SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("CrOS", "ChromeOS"),
           ("Windows", "Windows"), ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("Linux", "Linux"))


def device_label(user_agent: str) -> str:
    """"<browser> on <system>" when both are known; else the User-Agent's start, cut to MAX_LABEL characters."""
    browser = next((name for token, name in BROWSERS if token in user_agent), "")
    system = next((name for token, name in SYSTEMS if token in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return (browser or system or user_agent.strip())[:MAX_LABEL]
