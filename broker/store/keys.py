"""Redis key names. Every key of one user shares the hash tag {u:<user_id>}, so a user's steps stay in one slot."""

from __future__ import annotations

import hashlib


def digest(value: str) -> str:
    """SHA-256 hex: how state values, session secrets and open_ids appear in key names."""
    return hashlib.sha256(value.encode()).hexdigest()


class KeySpace:
    def __init__(self, prefix: str = "broker:") -> None:
        self.prefix = prefix

    def login_attempt(self, state_hash: str) -> str:
        return f"{self.prefix}login:{state_hash}"

    def open_id_index(self, open_id: str) -> str:
        # The only per-user key outside the user's slot: it is how a login finds the user id.
        return f"{self.prefix}oid:{digest(open_id)}"

    def user_tag(self, user_id: str) -> str:
        return f"{self.prefix}{{u:{user_id}}}"

    def user_tag_prefix(self) -> str:
        """What every per-user key starts with (see user_tag)."""
        return f"{self.prefix}{{u:"

    def denylist_prefix(self) -> str:
        """What the denylist keys outside any user's slot start with (see denied_subject)."""
        return f"{self.prefix}deny:"

    def user(self, user_id: str) -> str:
        return f"{self.user_tag(user_id)}:user"

    def tiktok_tokens(self, user_id: str) -> str:
        return f"{self.user_tag(user_id)}:tiktok"

    def session(self, user_id: str, sid: str) -> str:
        return f"{self.user_tag(user_id)}:s:{sid}"

    def user_sessions(self, user_id: str) -> str:
        return f"{self.user_tag(user_id)}:sessions"

    def user_families(self, user_id: str) -> str:
        """The user's live refresh families by creation (sorted set: sid -> created, ms), oldest first: what the
        caps on families count and end first."""
        return f"{self.user_tag(user_id)}:fams"

    def refresh_used(self, user_id: str, sid: str) -> str:
        """Hashes of a refresh family's spent tokens: presenting one again means the family leaked."""
        return f"{self.user_tag(user_id)}:rtu:{sid}"

    def refresh_grace(self, user_id: str, token_hash: str) -> str:
        """The sealed successor pair of a just-rotated refresh token, kept for the grace window only."""
        return f"{self.user_tag(user_id)}:rtg:{token_hash}"

    def consents(self, user_id: str) -> str:
        """What the user let each third-party app have (hash: client id -> scopes and when); deleted with the user."""
        return f"{self.user_tag(user_id)}:consents"

    def denied_jti(self, user_id: str, jti: str) -> str:
        return f"{self.user_tag(user_id)}:dj:{jti}"

    def deleted_marker(self, user_id: str) -> str:
        """Left for a short while by an account deletion, so that a login racing it cannot write into the
        deleted account (see Records.save_login)."""
        return f"{self.user_tag(user_id)}:deleted"

    def short_lived(self, user_id: str) -> str:
        """The names of a user's short-lived keys (denied jtis, codes, code markers): deletion reads this list."""
        return f"{self.user_tag(user_id)}:aux"

    def authorization_code(self, user_id: str, code_hash: str) -> str:
        return f"{self.user_tag(user_id)}:code:{code_hash}"

    def spent_code(self, user_id: str, code_hash: str) -> str:
        """Set when a code is exchanged, holding the refresh family it produced: a replay ends that family."""
        return f"{self.user_tag(user_id)}:code-spent:{code_hash}"

    def publishes(self, user_id: str) -> str:
        """The user's posts made through the proxy (hash: publish_id → record); deleted with the account."""
        return f"{self.user_tag(user_id)}:posts"

    def denied_subject(self, user_id: str) -> str:
        # Outlives the user's own keys (deletion), so it is named by a hash of the id, in no user's slot.
        return f"{self.denylist_prefix()}sub:{digest(user_id)}"

    def revoke_queue(self) -> str:
        """TikTok revocations waiting for another attempt (sorted set: item id → next attempt). The `{revoke}` tag
        puts it and its items in one Cluster slot, so an item and its place in the queue are written together."""
        return f"{self.prefix}{{revoke}}:queue"

    def revoke_item(self, item_id: str) -> str:
        """One waiting revocation: the sealed grant, named by a random id only (no user id, no open_id)."""
        return f"{self.prefix}{{revoke}}:item:{item_id}"

    def device_code(self, code_hash: str) -> str:
        """A device authorization in flight (RFC 8628), named by the hash of its device_code; its own hash tag,
        so that every step on it is one single-slot command or script."""
        return f"{self.prefix}{{dev:{code_hash}}}"

    def user_code(self, code_hash: str) -> str:
        """The user code a person types on /device, hashed, naming the hash of its device_code."""
        return f"{self.prefix}{{uc:{code_hash}}}"

    def dpop_proof(self, proof_hash: str) -> str:
        """A DPoP proof already used (RFC 9449 jti replay cache), until it would be too old anyway; its own tag."""
        return f"{self.prefix}{{dpop:{proof_hash}}}"

    def rate_bucket(self, bucket_hash: str) -> str:
        """A rate-limit bucket that belongs to no user (a client's address, an OAuth client). The whole name
        is its own hash tag: each bucket lands in its own Cluster slot, never all of them in one."""
        return f"{self.prefix}{{rl:{bucket_hash}}}"

    def readiness_probe(self) -> str:
        return f"{self.prefix}readyz"

    def events_stream(self) -> str:
        """The stream downstream services read with consumer groups. The hash tag puts it and the webhook
        outbox in one Cluster slot, so an event and its deliveries are written in one MULTI."""
        return f"{self.prefix}{{events}}"

    def event_seen(self, source_hash: str) -> str:
        """Marks an event from elsewhere (a TikTok webhook) as already emitted, beside the stream it went to, so
        the mark and the event are written in one step."""
        return f"{self.prefix}{{events}}:seen:{source_hash}"

    def event_outbox(self, part: str) -> str:
        """Webhook outbox, same slot as the stream: `deliveries` (hash: id → record), `due` (zset: id → next
        attempt instant), `stats` (hash of counters)."""
        return f"{self.prefix}{{events}}:out:{part}"
