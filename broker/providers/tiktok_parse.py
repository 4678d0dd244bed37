"""Reading TikTok's answers: status checks, JSON envelopes and field types, turned into our types or errors.

Pure functions over `httpx.Response`: no I/O, no logging. Every problem becomes an `UpstreamError` subclass
whose `log_detail` names the operation, HTTP status, TikTok error code and `log_id` but never a token value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from broker.domain import Identity, ProviderTokens
from broker.errors import UpstreamError, UpstreamRefusedRequest, UpstreamRejected, UpstreamUnavailable

SCOPE_BASIC = "user.info.basic"
SCOPE_PROFILE = "user.info.profile"
SCOPE_STATS = "user.info.stats"

# Which user/info fields each scope unlocks (since TikTok's 2024-02-29 scope migration).
FIELDS_BY_SCOPE: dict[str, tuple[str, ...]] = {
    SCOPE_BASIC: ("open_id", "union_id", "avatar_url", "avatar_url_100", "avatar_large_url", "display_name"),
    SCOPE_PROFILE: ("username", "bio_description", "profile_deep_link", "is_verified"),
    SCOPE_STATS: ("follower_count", "following_count", "likes_count", "video_count"),
}
# Best avatar first: TikTok may leave any of them out or empty.
_AVATAR_FIELDS = ("avatar_large_url", "avatar_url_100", "avatar_url")
# TikTok field name -> key in Identity.profile (the domain speaks its own words) and the JSON type expected.
_PROFILE_FIELDS: dict[str, tuple[str, type[str | int | bool]]] = {
    "avatar_url": ("avatar_url", str),
    "avatar_url_100": ("avatar_url_100", str),
    "avatar_large_url": ("avatar_large_url", str),
    "bio_description": ("bio", str),
    "profile_deep_link": ("profile_url", str),
    "is_verified": ("verified", bool),
    "follower_count": ("follower_count", int),
    "following_count": ("following_count", int),
    "likes_count": ("likes_count", int),
    "video_count": ("video_count", int),
}

# OAuth `error` values that mean "TikTok is having a moment", worth a retry rather than a failure page.
_OAUTH_TRANSIENT = frozenset({"server_error", "temporarily_unavailable"})
_SCOPE_ERRORS = frozenset({"scope_not_authorized", "scope_permission_missed"})
_USERINFO_TRANSIENT = frozenset({"internal_error", "rate_limit_exceeded"})
T = TypeVar("T")

LOG_ID_HEADER = "x-tt-logid"
_MAX_TEXT = 200  # keep TikTok's free text in logs short: it is for the operator, not evidence

GARBLED = "TikTok returned an unexpected answer. Please try again."
NO_LONGER_VALID = "Your TikTok sign-in is no longer valid. Please sign in again."
SCOPE_MISSING = ("TikTok did not grant a permission this app needs. "
                 "Please sign in again and allow the requested access.")


def fields_for_scopes(scopes: frozenset[str]) -> tuple[str, ...]:
    """The user/info fields to ask for: basic always (we need open_id), the others only when granted,
    because asking for a field of an ungranted scope makes TikTok fail the whole call."""
    fields = list(FIELDS_BY_SCOPE[SCOPE_BASIC])
    for scope in (SCOPE_PROFILE, SCOPE_STATS):
        if scope in scopes:
            fields.extend(FIELDS_BY_SCOPE[scope])
    return tuple(fields)


def parse_scopes(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _detail(op: str, response: httpx.Response | None, *parts: str, log_id: str = "") -> str:
    bits = [f"tiktok {op}"]
    if response is not None:
        bits.append(f"HTTP {response.status_code}")
        # A body that is not JSON (a proxy's error page) has no log_id: TikTok's header still names the request.
        log_id = log_id or response.headers.get(LOG_ID_HEADER, "")[:_MAX_TEXT]
    bits.extend(part for part in parts if part)
    if log_id:
        bits.append(f"log_id={log_id}")
    return "; ".join(bits)


def _short(value: object) -> str:
    return value[:_MAX_TEXT] if isinstance(value, str) else ""


def log_id_of(body: object) -> str:
    """TikTok's per-request id, at the top level (OAuth) or inside the `error` object (API v2)."""
    if not isinstance(body, Mapping):
        return ""
    for holder in (body, body.get("error")):
        if isinstance(holder, Mapping):
            log_id = holder.get("log_id")
            if isinstance(log_id, str) and log_id:
                return log_id[:_MAX_TEXT]
    return ""


def load_json(response: httpx.Response) -> object:
    """The body as JSON, or None when it is not JSON (callers decide whether that is acceptable)."""
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "").strip()
    # Only the delta-seconds form; isascii() because str.isdigit() accepts digits int() rejects ("²").
    if value.isascii() and value.isdigit():
        return int(value)
    return None


def raise_for_unavailable(op: str, response: httpx.Response, body: object) -> None:
    """429 and 5xx mean "try later" whatever the body says."""
    status = response.status_code
    if status == 429:
        retry_after = _retry_after(response)
        kwargs = {} if retry_after is None else {"retry_after": retry_after}
        raise UpstreamUnavailable(
            "TikTok is receiving too many requests right now. Please try again shortly.",
            log_detail=_detail(op, response, "rate limited", log_id=log_id_of(body)), **kwargs)
    if status >= 500:
        raise UpstreamUnavailable(log_detail=_detail(op, response, "server error", log_id=log_id_of(body)))


def _oauth_error(op: str, response: httpx.Response, body: Mapping[str, object],
                 rejected_description: str) -> UpstreamError:
    error = body.get("error")
    code = error if isinstance(error, str) else "malformed error"
    detail = _detail(op, response, f"error={code[:_MAX_TEXT]}", _short(body.get("error_description")),
                     log_id=log_id_of(body))
    if code == "invalid_grant":
        return UpstreamRejected(rejected_description, log_detail=detail)
    if code in _OAUTH_TRANSIENT:
        return UpstreamUnavailable(log_detail=detail)
    if code == "invalid_request":
        return UpstreamRefusedRequest(log_detail=detail)
    return UpstreamError(log_detail=detail)


def _has_error(body: Mapping[str, object]) -> bool:
    return body.get("error") not in (None, "")


def _require(body: Mapping[str, Any], key: str, kind: type[T], op: str, response: httpx.Response,
             log_id: str | None = None) -> T:
    """The field with the expected JSON type; anything else is a garbled answer (no KeyError/TypeError)."""
    value = body.get(key)
    # bool is an int subclass: never accept true/false where a count or lifetime is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        problem = "missing" if value is None else f"is {type(value).__name__}, expected {kind.__name__}"
        raise UpstreamError(GARBLED, log_detail=_detail(
            op, response, f"field {key} {problem}", log_id=log_id_of(body) if log_id is None else log_id))
    return value


def _object_body(op: str, response: httpx.Response) -> Mapping[str, object]:
    body = load_json(response)
    raise_for_unavailable(op, response, body)
    if not isinstance(body, dict):
        what = "not JSON" if body is None else f"JSON {type(body).__name__}, not an object"
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, f"body is {what}"))
    return body


def parse_token_response(op: str, response: httpx.Response, *, issued_at: float,
                         rejected_description: str) -> ProviderTokens:
    """A token-endpoint answer. Success is judged by the body (TikTok answers errors with HTTP 200 too)."""
    body = _object_body(op, response)
    if _has_error(body):
        raise _oauth_error(op, response, body, rejected_description)
    if "access_token" not in body:
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, "no access_token and no error",
                                                        log_id=log_id_of(body)))
    access_token = _require(body, "access_token", str, op, response)
    refresh_token = _require(body, "refresh_token", str, op, response)
    open_id = _require(body, "open_id", str, op, response)
    scope = _require(body, "scope", str, op, response)
    expires_in = _require(body, "expires_in", int, op, response)
    refresh_expires_in = _require(body, "refresh_expires_in", int, op, response)
    token_type = body.get("token_type", "Bearer")
    problems = [name for name, bad in (
        ("access_token empty", not access_token), ("refresh_token empty", not refresh_token),
        ("open_id empty", not open_id), ("expires_in not positive", expires_in <= 0),
        ("refresh_expires_in negative", refresh_expires_in < 0),
        ("token_type not Bearer", not isinstance(token_type, str) or token_type.lower() != "bearer"),
    ) if bad]
    if problems:
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, ", ".join(problems),
                                                        log_id=log_id_of(body)))
    return ProviderTokens(
        subject=open_id, access_token=access_token, refresh_token=refresh_token,
        expires_at=issued_at + expires_in, refresh_expires_at=issued_at + refresh_expires_in,
        scopes=parse_scopes(scope))


def parse_revoke_response(op: str, response: httpx.Response) -> None:
    """Success is an empty body (older docs) or `{}` (newer docs); errors have the OAuth shape."""
    if not response.content.strip():
        raise_for_unavailable(op, response, None)
        if response.is_success:
            return
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, "empty error body"))
    body = _object_body(op, response)
    if _has_error(body):
        raise _oauth_error(op, response, body, NO_LONGER_VALID)
    if not response.is_success:
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, "error status without error",
                                                        log_id=log_id_of(body)))


def _user_info_error(op: str, response: httpx.Response, code: str, body: Mapping[str, object],
                     error: Mapping[str, object]) -> UpstreamError:
    detail = _detail(op, response, f"error.code={code[:_MAX_TEXT]}", _short(error.get("message")),
                     log_id=log_id_of(body))
    if code == "access_token_invalid":
        return UpstreamRejected(NO_LONGER_VALID, log_detail=detail)
    if code in _SCOPE_ERRORS:
        # Not a refresh case: the grant lacks the scope, only a new consent can add it.
        return UpstreamRejected(SCOPE_MISSING, log_detail=detail)
    if code in _USERINFO_TRANSIENT:
        return UpstreamUnavailable(log_detail=detail)
    return UpstreamError(log_detail=detail)


def parse_user_info(op: str, response: httpx.Response, tokens: ProviderTokens,
                    provider: str) -> Identity:
    """The `{data: {user}, error: {code}}` envelope: success only when error.code is "ok"."""
    body = _object_body(op, response)
    error = body.get("error")
    code = error.get("code") if isinstance(error, Mapping) else None
    if not isinstance(error, Mapping) or not isinstance(code, str):
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, "no error.code in envelope",
                                                        log_id=log_id_of(body)))
    if code != "ok":
        raise _user_info_error(op, response, code, body, error)
    log_id = log_id_of(body)
    data = _require(body, "data", dict, op, response)
    user: dict[str, Any] = _require(data, "user", dict, op, response, log_id)

    def text(key: str) -> str:
        if user.get(key) is None:
            return ""
        return _require(user, key, str, op, response, log_id)

    open_id = text("open_id") or tokens.subject
    if not open_id or (tokens.subject and open_id != tokens.subject):
        # Values stay out of the log: open_ids are personal identifiers.
        raise UpstreamError(GARBLED, log_detail=_detail(op, response, "open_id does not match the grant",
                                                        log_id=log_id))
    profile: dict[str, str | int | bool] = {}
    for field_name, (key, kind) in _PROFILE_FIELDS.items():
        if user.get(field_name) is not None:
            value: str | int | bool = _require(user, field_name, kind, op, response, log_id)
            if value != "":
                profile[key] = value
    return Identity(
        provider=provider, subject=open_id, display_name=text("display_name"),
        avatar_url=next((url for url in map(text, _AVATAR_FIELDS) if url), ""),
        union_id=text("union_id") or None,
        username=text("username") or None,  # only asked for (and granted) with user.info.profile
        profile=profile)
