"""The throttle on sign-ups (registering for a meeting, asking for a new confirmation code):
each one may send an email, and each writes a row, so neither a single client nor a crowd of
them may do it as fast as they like.

Two token buckets must both have a token for a sign-up to pass: one per client address (as
`control.throttle.client_key` gives it: an IPv4 address, or an IPv6 /64, which one subscriber
usually holds whole) and one per meeting (every client together, so that sign-ups spread over
many addresses are slowed too). A bucket holds `per_minute` tokens and refills at
`per_minute` a minute: a burst of that many, then one every 60/`per_minute` seconds. A refused
sign-up takes no token from either bucket, so a client that is throttled does not also use up
the meeting's allowance. The answer is 429 with the seconds until a token is back
(`Retry-After`).

Sans-IO: the caller passes `now` (seconds). Memory is bounded: at most `max_entries` buckets
of each kind, the least recently used dropped first (a dropped bucket is a full one, which
only errs towards letting a client through).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from control.errors import Throttled

__all__ = ["SignupThrottle", "TokenBuckets"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Token buckets of `capacity` tokens each, refilled at `capacity` per `period` seconds,
    one per key."""

    def __init__(self, capacity: int, period: float = 60.0, max_entries: int = 100_000) -> None:
        if capacity < 1 or period <= 0 or max_entries < 1:
            raise ValueError("need capacity >= 1, period > 0 and max_entries >= 1")
        self.capacity = float(capacity)
        self.rate = capacity / period  # tokens a second
        self.max_entries = max_entries
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
            bucket.updated = max(bucket.updated, now)
            self._buckets.move_to_end(key)
        return bucket

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` has a token (0: it has one now)."""
        bucket = self._refilled(key, now)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def take(self, key: str, now: float) -> None:
        """Take a token (call `wait` first: this does not check)."""
        self._refilled(key, now).tokens -= 1.0

    def __len__(self) -> int:
        return len(self._buckets)


class SignupThrottle:
    """Sign-ups per client address and per meeting (see the module's docstring)."""

    def __init__(
        self,
        *,
        client_per_minute: int = 5,
        meeting_per_minute: int = 120,
        max_entries: int = 100_000,
    ) -> None:
        self.clients = TokenBuckets(client_per_minute, 60.0, max_entries)
        self.meetings = TokenBuckets(meeting_per_minute, 60.0, max_entries)

    def take(self, meeting_id: str, client: str, now: float) -> None:
        """Let one sign-up of `client` (a `client_key`) for the meeting through, or raise
        Throttled with the seconds to wait; a refused sign-up takes no token."""
        client_wait = self.clients.wait(client, now)
        meeting_wait = self.meetings.wait(meeting_id, now)
        if client_wait > 0 and client_wait >= meeting_wait:
            raise Throttled(
                f"too many sign-ups from your address; try again in {math.ceil(client_wait)} s",
                client_wait,
            )
        if meeting_wait > 0:
            raise Throttled(
                "too many sign-ups for this meeting just now; try again in "
                f"{math.ceil(meeting_wait)} s",
                meeting_wait,
            )
        self.clients.take(client, now)
        self.meetings.take(meeting_id, now)
