"""Limits on joining that keep one meeting, one client or one target address from being
turned into a traffic cannon (docs/SECURITY.md, "Reflection"). Sans-IO: the caller passes
`now`; nothing here touches the store.

- `max_participants`: present participants per meeting.
- `listeners_per_address`: present participants, over every meeting, whose `receive_at`
  names one address (an IPv4 address, or an IPv6 /64: one subscriber holds a whole /64). With
  consent (a listener's address gets media only once it asked, relay/worker.py and
  ext/table.pxi) a stranger's address gets nothing; this caps what any one address can be
  sent even when it did ask, so that many joins cannot multiply a stream towards it.
- `joins_per_minute`: joins per client (again per IPv4 address or IPv6 /64), a token bucket
  that refills at that rate; a caller with the operator token (a service joining on behalf of
  its users) is not counted.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from control.errors import ApiError, Full, Throttled
from control.throttle import client_key

__all__ = ["JoinLimits", "TooManyListeners"]


class TooManyListeners(ApiError):
    """The address already receives for as many participants as it may."""

    status = 409
    code = "too_many_listeners"


@dataclass
class JoinLimits:
    max_participants: int = 100_000
    listeners_per_address: int = 64
    joins_per_minute: int = 600
    max_clients: int = 100_000  # join-rate records kept, the least recently used dropped
    _listeners: Counter[str] = field(default_factory=Counter, repr=False)
    _buckets: OrderedDict[str, tuple[float, float]] = field(
        default_factory=OrderedDict, repr=False
    )  # client -> (tokens, when counted)

    def __post_init__(self) -> None:
        for name in ("max_participants", "listeners_per_address", "joins_per_minute"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    # -- participants per meeting --

    def check_room(self, present: int) -> None:
        if present >= self.max_participants:
            raise Full(f"this meeting has as many participants as it may ({self.max_participants})")

    # -- listeners per target address --

    def check_listener(self, ip: str) -> None:
        if self._listeners[client_key(ip)] >= self.listeners_per_address:
            raise TooManyListeners(
                "that receive_at address already receives for as many participants as one "
                f"address may ({self.listeners_per_address})"
            )

    def add_listener(self, ip: str) -> None:
        self._listeners[client_key(ip)] += 1

    def remove_listener(self, ip: str) -> None:
        key = client_key(ip)
        self._listeners[key] -= 1
        if self._listeners[key] <= 0:
            del self._listeners[key]

    def clear_listeners(self) -> None:
        self._listeners.clear()

    def listeners_at(self, ip: str) -> int:
        return self._listeners[client_key(ip)]

    # -- joins per client --

    def take_join(self, client: str, now: float) -> None:
        """Count one join by `client` (a raw address); Throttled once its bucket is empty."""
        key = client_key(client)
        rate = self.joins_per_minute / 60.0
        tokens, then = self._buckets.pop(key, (float(self.joins_per_minute), now))
        tokens = min(float(self.joins_per_minute), tokens + max(0.0, now - then) * rate)
        if tokens < 1.0:
            self._remember(key, tokens, now)
            wait = (1.0 - tokens) / rate
            raise Throttled(
                f"too many joins from your address (at most {self.joins_per_minute} a "
                f"minute); try again in {math.ceil(wait)} s",
                wait,
            )
        self._remember(key, tokens - 1.0, now)

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
