"""The proof of work that password joins need while a meeting is under attack (README.md,
"Proof of work"; the puzzle itself: control/puzzle.py). Sans-IO: every call takes `now`.

A meeting that sees many wrong passwords from all clients together is not locked: every
password join on it must then carry a proof whose cost rises with the number of recent
failures, capped so that a correct password's join stays within 2 s. The proof is checked
before the password, so the attacker pays for every guess and a correct password is only
delayed.
"""

from __future__ import annotations

import base64
import heapq
import hmac
import math
import secrets
import struct
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from control import puzzle
from control.errors import ProofOfWorkRequired

__all__ = ["Challenge", "JoinPuzzles", "Proof"]

# A meeting is under attack once it has seen POW_THRESHOLD wrong passwords within POW_WINDOW
# seconds (ten minutes, so a slow attack counts too, and the cost stays up for a while after
# one stops); every password join then needs a proof of work (control/puzzle.py) of
# POW_SOLUTIONS nonces of POW_MIN_BITS zero bits, one bit more (twice the work) each time the
# count doubles, up to POW_MAX_BITS. Measured on the development machine (2-core Xeon,
# shared; `python -m bench.guessing`, docs/RELIABILITY.md): control.puzzle.solve tries about
# 2.5 million nonces a second on one core, so 32 x 2**16 (2.1 million tries) takes 0.9 s
# (median of 21 solves; 1.2 s at the slowest), and a correct password's whole join, solving
# and Argon2 included, took 0.88 s (1.5 s at the slowest of 21): under 2 s, with room for a
# busier machine. 2**17 would double the solve and pass 2 s.
POW_THRESHOLD = 10
POW_WINDOW = 600.0
_POW_BUCKETS = 60  # the window is counted in this many buckets (10 s each by default)
POW_SOLUTIONS = 32
POW_MIN_BITS = 12
POW_MAX_BITS = 16
# How long a challenge may be answered: far longer than a solve at the cap (about 1 s), short
# enough that challenges fetched while a meeting was calm are useless once it is under attack.
POW_TTL = 60.0

_POW_VERSION = 1
_POW_BODY = struct.Struct(">BqBB16s")  # version, expiry (ms), difficulty, solutions, salt
_POW_TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits (RFC 2104 section 5 allows it)
_POW_TEXT_CHARS = 58  # base64url of 27 + 16 bytes, without padding
_POW_CONTEXT = b"relay join proof of work v1\x00"


class Proof(NamedTuple):
    """A solved challenge as a join carries it (the API's request model checked its shape)."""

    challenge: str
    nonces: tuple[int, ...]


@dataclass(frozen=True)
class Challenge:
    """A challenge as issued: `text` is what the client hashes and sends back."""

    text: str
    difficulty: int
    solutions: int
    expires_at: float

    def to_json(self, now: float) -> dict[str, object]:
        """What the API's 428 error carries (README.md, "Proof of work")."""
        return {
            "algorithm": puzzle.ALGORITHM,
            "challenge": self.text,
            "difficulty": self.difficulty,
            "solutions": self.solutions,
            "expires_in": round(max(0.0, self.expires_at - now), 3),
        }


@dataclass(frozen=True)
class _Decoded:
    expires_at: float
    difficulty: int
    solutions: int
    tag: bytes


class JoinPuzzles:
    """The proof of work that password joins need while a meeting is under attack: counts
    each meeting's recent wrong passwords, picks the difficulty, issues challenges and checks
    proofs. Sans-IO like the rest of this module: every call takes `now`.

    Challenges are stateless: the challenge text carries its expiry, difficulty, count and a
    random salt, authenticated by HMAC-SHA256 (RFC 2104) under a key that exists only in this
    process's memory, over those and the meeting id, so a challenge is good for one meeting,
    and only until it expires or this process ends. Each proof admits one password check:
    the tags of accepted challenges are remembered until their expiry. That memory is bounded
    (`max_spent`): when it is full the entries that expire first are dropped and every
    challenge expiring no later than them counts as spent, so a dropped entry can never be
    replayed (at worst an honest client whose challenge was that old solves a new one; it
    takes an attacker `max_spent` accepted proofs within one challenge lifetime to get
    there). The failure counts are kept per meeting in buckets of `window` / 60 seconds (at
    most 61 of them), for at most `max_meetings` meetings, the least recently failed dropped
    first. Password checks in flight (between `begin` and `end`) count as failures until they
    are known not to be, so a burst of guesses sent at once cannot all pass before the first
    failure is counted.
    """

    def __init__(
        self,
        *,
        threshold: int = POW_THRESHOLD,
        window: float = POW_WINDOW,
        min_bits: int = POW_MIN_BITS,
        max_bits: int = POW_MAX_BITS,
        solutions: int = POW_SOLUTIONS,
        ttl: float = POW_TTL,
        max_meetings: int = 100_000,
        max_spent: int = 100_000,
    ) -> None:
        if threshold < 1 or max_meetings < 1 or max_spent < 1:
            raise ValueError("threshold, max_meetings and max_spent must be at least 1")
        if not 0 < window <= 86_400 or not 0 < ttl <= 86_400:
            raise ValueError("window and ttl must be more than 0 s and at most a day")
        if not 0 <= min_bits <= max_bits <= 40:
            raise ValueError("need 0 <= min_bits <= max_bits <= 40")
        if not 1 <= solutions <= puzzle.MAX_SOLUTIONS:
            raise ValueError(f"solutions must be 1 to {puzzle.MAX_SOLUTIONS}")
        if solutions << max_bits > puzzle.MAX_CLIENT_WORK:
            raise ValueError("the hardest puzzle would be more than clients agree to solve")
        self.threshold = threshold
        self.window = float(window)
        self.bucket = self.window / _POW_BUCKETS
        self.min_bits = min_bits
        self.max_bits = max_bits
        self.solutions = solutions
        self.ttl = float(ttl)
        self.max_meetings = max_meetings
        self.max_spent = max_spent
        self._key = secrets.token_bytes(32)
        self._failures: OrderedDict[str, deque[list[int]]] = OrderedDict()
        self._in_flight: dict[str, int] = {}
        self._spent: dict[bytes, float] = {}
        self._spent_by_expiry: list[tuple[float, bytes]] = []  # a heap
        self._spent_floor = -math.inf  # challenges expiring at or before this count as spent

    def __repr__(self) -> str:
        return f"JoinPuzzles({len(self._failures)} meetings, {len(self._spent)} spent)"

    # -- how hard: recent wrong passwords per meeting --

    def _buckets(self, meeting_id: str, now: float) -> deque[list[int]] | None:
        """The meeting's [bucket, failures] pairs still inside the window, or None. Bucket b
        holds the failures of [b * bucket, (b + 1) * bucket) seconds, and counts while it
        ends after now - window: failures are forgotten up to one bucket early."""
        oldest = math.floor((now - self.window) / self.bucket)  # buckets up to this are out
        while self._failures:  # the least recently failed first: drop those gone quiet
            key, head = next(iter(self._failures.items()))
            if head and head[-1][0] > oldest:
                break
            del self._failures[key]
        buckets = self._failures.get(meeting_id)
        if buckets is None:
            return None
        while buckets and buckets[0][0] <= oldest:
            buckets.popleft()
        return buckets

    def failure(self, meeting_id: str, now: float) -> None:
        """Count a wrong password for the meeting (from any client)."""
        index = math.floor(now / self.bucket)
        buckets = self._buckets(meeting_id, now)
        if buckets is None:
            buckets = self._failures[meeting_id] = deque()
            while len(self._failures) > self.max_meetings:
                self._failures.popitem(last=False)
        self._failures.move_to_end(meeting_id)
        if buckets and buckets[-1][0] >= index:  # this bucket (or a clock that went back)
            buckets[-1][1] += 1
        else:
            buckets.append([index, 1])

    def recent_failures(self, meeting_id: str, now: float) -> int:
        """Wrong passwords for the meeting within the last `window` seconds."""
        buckets = self._buckets(meeting_id, now)
        return 0 if buckets is None else sum(count for _, count in buckets)

    def difficulty_for(self, failures: int) -> int:
        """Leading zero bits each nonce needs after `failures` recent wrong passwords; 0 (no
        proof needed) below the threshold. Each doubling of the failures doubles the work."""
        if failures < self.threshold:
            return 0
        doublings = (failures // self.threshold).bit_length() - 1
        return min(self.min_bits + doublings, self.max_bits)

    def difficulty(self, meeting_id: str, now: float) -> int:
        """What the meeting asks now: its recent failures and its checks in flight."""
        pending = self._in_flight.get(meeting_id, 0)
        return self.difficulty_for(self.recent_failures(meeting_id, now) + pending)

    # -- challenges --

    def _tag(self, meeting_id: str, body: bytes) -> bytes:
        message = _POW_CONTEXT + body + meeting_id.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, "sha256").digest()[:_POW_TAG_BYTES]

    def challenge(self, meeting_id: str, now: float, difficulty: int | None = None) -> Challenge:
        """A fresh challenge for the meeting at its current difficulty (or `difficulty`)."""
        bits = self.difficulty(meeting_id, now) if difficulty is None else difficulty
        bits = max(bits, self.min_bits)
        expires_ms = math.floor((now + self.ttl) * 1000)  # never later than ttl from now
        body = _POW_BODY.pack(
            _POW_VERSION, expires_ms, bits, self.solutions, secrets.token_bytes(16)
        )
        raw = body + self._tag(meeting_id, body)
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return Challenge(text, bits, self.solutions, expires_ms / 1000)

    def _decode(self, meeting_id: str, text: str) -> _Decoded | None:
        """The challenge's fields if this process issued it for this meeting, else None."""
        if len(text) != _POW_TEXT_CHARS or not text.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "==")
        except ValueError:  # binascii.Error
            return None
        if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != text:
            return None  # not canonical: a second spelling of one challenge
        body, tag = raw[: _POW_BODY.size], raw[_POW_BODY.size :]
        if len(tag) != _POW_TAG_BYTES or not hmac.compare_digest(tag, self._tag(meeting_id, body)):
            return None
        version, expires_ms, bits, solutions, _salt = _POW_BODY.unpack(body)
        if version != _POW_VERSION:
            return None
        return _Decoded(expires_ms / 1000, bits, solutions, tag)

    def _forget_expired(self, now: float) -> None:
        while self._spent_by_expiry and self._spent_by_expiry[0][0] < now:
            _, tag = heapq.heappop(self._spent_by_expiry)
            self._spent.pop(tag, None)

    def _spend(self, decoded: _Decoded, now: float) -> None:
        self._spent[decoded.tag] = decoded.expires_at
        heapq.heappush(self._spent_by_expiry, (decoded.expires_at, decoded.tag))
        while len(self._spent) > self.max_spent:
            expires_at, tag = heapq.heappop(self._spent_by_expiry)
            self._spent.pop(tag, None)
            self._spent_floor = max(self._spent_floor, expires_at)

    def _refuse(self, meeting_id: str, reason: str, now: float) -> NoReturn:
        fresh = self.challenge(meeting_id, now)
        raise ProofOfWorkRequired(
            f"{reason}: solve this answer's challenge and send the join again with it "
            "and its nonces as proof_of_work",
            fresh.to_json(now),
        )

    def require(self, meeting_id: str, proof: Proof | None, now: float) -> None:
        """Pass if the meeting needs no proof of work now, or `proof` is a good one, which is
        then spent; otherwise ProofOfWorkRequired (428) with a fresh challenge and why."""
        needed = self.difficulty(meeting_id, now)
        if needed == 0:
            return  # a proof sent anyway is neither checked nor spent
        if proof is None:
            self._refuse(meeting_id, "this meeting is seeing many failed joins", now)
        text, nonces = proof
        decoded = self._decode(meeting_id, text)
        if decoded is None:
            self._refuse(
                meeting_id,
                "the proof of work's challenge was not issued for this meeting by this server "
                "(or the server restarted since)",
                now,
            )
        if now >= decoded.expires_at:
            self._refuse(meeting_id, "the proof of work's challenge expired", now)
        self._forget_expired(now)
        if decoded.tag in self._spent or decoded.expires_at <= self._spent_floor:
            self._refuse(
                meeting_id, "the proof of work's challenge was used already (one join each)", now
            )
        if decoded.difficulty < needed - 1:  # one step of slack for a solve in flight
            self._refuse(meeting_id, "the meeting now asks for a harder proof of work", now)
        if not _solves(text, nonces, decoded):
            self._refuse(meeting_id, "the proof of work's nonces do not solve its challenge", now)
        self._spend(decoded, now)

    def begin(self, meeting_id: str, proof: Proof | None, now: float) -> None:
        """`require`, then the password check is in flight until `end`."""
        self.require(meeting_id, proof, now)
        self._in_flight[meeting_id] = self._in_flight.get(meeting_id, 0) + 1

    def end(self, meeting_id: str, now: float, failed: bool) -> None:
        """After the check `begin` let through: a failure is counted if it failed."""
        pending = self._in_flight.get(meeting_id, 0) - 1
        if pending > 0:
            self._in_flight[meeting_id] = pending
        else:
            self._in_flight.pop(meeting_id, None)
        if failed:
            self.failure(meeting_id, now)

    def status(self, meeting_id: str, now: float) -> dict[str, bool | float | int]:
        """The meeting's join throttle as the API shows it (README.md, "Proof of work")."""
        failures = self.recent_failures(meeting_id, now)
        bits = self.difficulty(meeting_id, now)
        return {
            # There is no meeting-wide lockout any more (a correct password always gets
            # through): these two stay for clients of the first version of this answer.
            "locked_out": False,
            "retry_after": 0.0,
            "recent_failures": failures,
            "proof_of_work": bits > 0,
            "difficulty": bits,
            "solutions": self.solutions if bits else 0,
        }

    def spent(self) -> int:
        """How many spent challenges are remembered (for tests and metrics)."""
        return len(self._spent)


def _solves(text: str, nonces: tuple[int, ...], decoded: _Decoded) -> bool:
    """`solutions` nonces, strictly increasing (so distinct), each a solution."""
    if len(nonces) != decoded.solutions:
        return False
    if any(b <= a for a, b in zip(nonces, nonces[1:], strict=False)):
        return False
    return all(puzzle.is_solution(text, n, decoded.difficulty) for n in nonces)
