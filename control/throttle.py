"""The throttle on failed credentials, per client (README.md, "Proof of work";
docs/RELIABILITY.md, "Password guessing"). Sans-IO: every call takes `now` (seconds, from a
monotonic clock).

- Host keys, join tokens and the operator token are checked first, before any throttle: a
  correct one always gets through. A wrong one counts against its client only (scope "" for
  the whole server): 256 random bits cannot be guessed at any rate, so the limit is there to
  slow a misbehaving client, never to protect the secret, and it must not let a guesser
  behind the same NAT or /64 lock the owner out.
- Passwords can be weak. Each client (IPv6 by its /64, `client_key`) is locked out of a
  meeting after 5 wrong passwords within 60 s, for 1 s doubling with each further failure up
  to 300 s; a success does not reset the count. A meeting that sees many wrong passwords from
  all clients together is not locked (that would let 10 addresses keep the host and every
  attendee out): it asks for a proof of work instead (control/proof_of_work.py).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from control.errors import Throttled

__all__ = ["FailureThrottle", "client_key"]


def client_key(address: str) -> str:
    """The throttle key for a client address: IPv4 as is, IPv6 by its /64 (one subscriber
    usually holds a whole /64, so single IPv6 addresses would cost an attacker nothing),
    IPv4-mapped IPv6 as the IPv4 address. Anything unparsable is returned unchanged."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Record:
    """Failures of one client in one scope.

    `times` holds the last `threshold` failure times still inside the window; `level` is how
    many lockouts the current run has earned (0: none yet), and `count` how many failures the
    run holds."""

    threshold: int
    times: deque[float] = field(init=False)
    level: int = 0
    count: int = 0
    last_failure: float = -math.inf
    locked_until: float = -math.inf

    def __post_init__(self) -> None:
        self.times = deque(maxlen=self.threshold)


class FailureThrottle:
    """Exponential back-off on failures, per client (`client_key(address)`) within a scope:
    the meeting, for wrong passwords; "" (the whole server) for wrong host keys, join tokens
    and bearer tokens. Only a client's own failures ever lock it out.

    A client that fails `client_threshold` times within `window` seconds is locked out for
    `base_lockout`, and each further failure doubles that, up to `max_lockout`; the run is
    forgotten once `window` seconds pass without a failure after the last lockout ended. A
    success does not end the run: otherwise a client that knows one password (an attendee's)
    could reset its count between guesses at another (the panelist password). Memory is
    bounded: at most `max_entries` records, the least recently used evicted first, and expired
    records are dropped as calls come in.
    """

    def __init__(
        self,
        *,
        client_threshold: int = 5,
        window: float = 60.0,
        base_lockout: float = 1.0,
        max_lockout: float = 300.0,
        max_entries: int = 100_000,
        refusal: str = "too many failed attempts to join this meeting from your address",
    ) -> None:
        if client_threshold < 1:
            raise ValueError("the threshold must be at least 1")
        if not (window > 0 and base_lockout > 0 and max_lockout >= base_lockout):
            raise ValueError("need window > 0 and 0 < base_lockout <= max_lockout")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.client_threshold = client_threshold
        self.window = float(window)
        self.base_lockout = float(base_lockout)
        self.max_lockout = float(max_lockout)
        self.max_entries = max_entries
        self.refusal = refusal
        self._clients: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        # Attempts between `begin` and `end`, per client: its password checks in flight.
        self._in_flight: dict[tuple[str, str], int] = {}

    # -- records --

    def _expired(self, record: _Record, now: float) -> bool:
        """The run is over: `window` seconds without a failure, counted from the end of the
        last lockout if there was one."""
        return now >= max(record.last_failure, record.locked_until) + self.window

    def _prune(self, record: _Record, now: float) -> None:
        """Forget failures that left the window (only while no lockout has been earned: once
        one has, the run lasts until it expires as a whole)."""
        if record.level == 0:
            while record.times and record.times[0] <= now - self.window:
                record.times.popleft()
            record.count = len(record.times)

    def _drop_expired_head(self, now: float) -> None:
        while self._clients:
            key, record = next(iter(self._clients.items()))
            if not self._expired(record, now):
                return
            del self._clients[key]

    def _get(self, key: tuple[str, str], now: float) -> _Record | None:
        self._drop_expired_head(now)
        record = self._clients.get(key)
        if record is None:
            return None
        if self._expired(record, now):
            del self._clients[key]
            return None
        self._prune(record, now)
        self._clients.move_to_end(key)
        return record

    def _lockout(self, level: int) -> float:
        # level is at least 1; min() keeps 2**k from growing past the cap (and past float range).
        return min(self.base_lockout * 2.0 ** min(level - 1, 1023), self.max_lockout)

    # -- API --

    def wait(self, scope: str, client: str, now: float) -> float:
        """Seconds until `client` may try again in `scope` (0 when it may now)."""
        record = self._get((scope, client), now)
        return 0.0 if record is None else max(0.0, record.locked_until - now)

    def check(self, scope: str, client: str, now: float) -> None:
        """Raise Throttled while `client` is locked out in `scope`."""
        wait = self.wait(scope, client, now)
        if wait > 0:
            raise Throttled(f"{self.refusal}; try again in {math.ceil(wait)} s", wait)

    def _room(self, key: tuple[str, str], now: float) -> int:
        """How many more failures the client may have before it is locked out."""
        record = self._get(key, now)
        if record is None:
            return self.client_threshold
        if record.level > 0:  # a run that was locked out: its next failure locks it again
            return 1
        return self.client_threshold - len(record.times)

    def begin(self, scope: str, client: str, now: float) -> None:
        """Before a password check that takes time (Argon2 runs in a thread): Throttled
        while the client is locked out, or while the attempts it has in flight could already
        take it to the lockout; the attempt is then in flight until `end`. Without this a
        client could send a thousand guesses at once, all checked before the first failure
        is counted."""
        self.check(scope, client, now)
        key = (scope, client)
        pending = self._in_flight.get(key, 0)
        if pending >= self._room(key, now):
            raise Throttled(f"{self.refusal}, or too many at once; try again in 1 s", 1.0)
        self._in_flight[key] = pending + 1

    def end(self, scope: str, client: str, now: float, failed: bool) -> None:
        """After the check `begin` let through: a failure is counted if it failed."""
        key = (scope, client)
        pending = self._in_flight.get(key, 0) - 1
        if pending > 0:
            self._in_flight[key] = pending
        else:
            self._in_flight.pop(key, None)
        if failed:
            self.failure(scope, client, now)

    def failure(self, scope: str, client: str, now: float) -> None:
        """Record a failure (a wrong password, key or token) of `client` in `scope`."""
        key = (scope, client)
        record = self._get(key, now)
        if record is None:
            record = self._clients[key] = _Record(self.client_threshold)
            while len(self._clients) > self.max_entries:
                self._clients.popitem(last=False)
        record.times.append(now)
        record.count += 1
        record.last_failure = max(record.last_failure, now)
        if record.level > 0 or len(record.times) >= self.client_threshold:
            record.level += 1
            until = now + self._lockout(record.level)
            record.locked_until = max(record.locked_until, until)

    def __len__(self) -> int:
        """How many client records are held (for tests and metrics)."""
        return len(self._clients)
