"""Credentials of the control plane: meeting passwords, host keys, the operator token, and the
throttle on failed joins (DESIGN.md, "Keys, joining, addresses"). Sans-IO: nothing here reads
a clock or touches the network or the disk; wherever time matters the caller passes `now`
(seconds, from a monotonic clock).

Meeting passwords are what people choose or are shown once, so they can be weak and get
guessed offline if the store leaks. They are stored only as Argon2id hashes (RFC 9106): a
memory-hard KDF, so each guess costs tens of MiB of memory as well as time, which blunts GPU and
ASIC guessing far better than a fast hash; the "id" variant resists both side channels and
time-memory trade-offs, and it is the choice of RFC 9106 and OWASP. The stored form is the
self-describing PHC string `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>` (standard
base64 without padding, the same form `cryptography`'s `derive_phc_encoded` writes), so
verification re-derives with the parameters of the stored string and the defaults can be raised
later without invalidating existing meetings. Each hash has its own random 16-byte salt, so two
meetings with the same password store different strings. Passwords are NFKC-normalised first
(NIST SP 800-63B) so the same text typed on different systems matches.

Host keys and the operator token are generated here (256 random bits each), shown once, and
stored only as their SHA-256 digest. A fast hash is right for them: with 256 bits of entropy
there is nothing to guess, and every authenticated API call checks one. All comparisons of
secrets go through `hmac.compare_digest` (constant time).

Guessing is bounded without ever refusing a correct credential because of someone else
(README.md, "Proof of work"; docs/RELIABILITY.md, "Password guessing"):
- Host keys, join tokens and the operator token are checked first, before any throttle: a
  correct one always gets through. A wrong one counts against its client only
  (`FailureThrottle`, scope "" for the whole server): 256 random bits cannot be guessed at any
  rate, so the limit is there to slow a misbehaving client, never to protect the secret, and
  it must not let a guesser behind the same NAT or /64 lock the owner out.
- Passwords can be weak. Each client (IPv6 by its /64, `client_key`) is locked out of a
  meeting after 5 wrong passwords within 60 s, for 1 s doubling with each further failure up
  to 300 s (`FailureThrottle`); a success does not reset the count. A meeting that sees many
  wrong passwords from all clients together is not locked (that let 10 addresses keep the host
  and every attendee out): every password join on it must then carry a proof of work
  (`JoinPuzzles`, control/puzzle.py) whose cost rises with the number of recent failures, and
  is capped so that a correct password's join stays within 2 s; the proof is checked before
  the password, so the attacker pays for every guess and a correct password is only delayed.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import ipaddress
import math
import re
import secrets
import struct
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from control import puzzle
from control.errors import Invalid, ProofOfWorkRequired, Throttled

# --- meeting passwords ---------------------------------------------------------------------

# Argon2id cost. Measured on the development machine (2-core Intel Xeon, cryptography 50):
# m=47104 KiB (46 MiB), t=1, p=1 takes about 43-46 ms per hash, inside the 20-60 ms aimed for;
# it is also the first of OWASP's recommended Argon2id settings. One lane keeps one hash on
# one core. `derive` releases the GIL (2 threads hash twice as fast), so the API should run it
# in a thread pool.
ARGON2_MEMORY_KIB = 47104
ARGON2_ITERATIONS = 1
ARGON2_LANES = 1
ARGON2_SALT_BYTES = 16
ARGON2_HASH_BYTES = 32
ARGON2_VERSION = 19  # 0x13, the only version the library implements

PASSWORD_MIN_CHARS = 1
PASSWORD_MAX_CHARS = 256

# Limits on parameters read from a stored string: anything outside is not one of ours and
# would only let a corrupted record cost unbounded memory or time.
_MAX_MEMORY_KIB = 1 << 21  # 2 GiB
_MAX_ITERATIONS = 64
_MAX_LANES = 16

_PHC = re.compile(
    r"\$argon2id\$v=(?P<v>[0-9]+)\$m=(?P<m>[0-9]+),t=(?P<t>[0-9]+),p=(?P<p>[0-9]+)"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    """Strict standard base64 without padding, as PHC strings use; ValueError otherwise."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError("bad base64 in stored password hash") from exc
    if _b64encode(data) != text:  # a length or trailing bits no encoder writes
        raise ValueError("non-canonical base64 in stored password hash")
    return data


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str):
        raise Invalid("password must be a string")
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise Invalid(
            f"password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long "
            f"(got {len(password)})"
        )
    # surrogatepass: a lone surrogate cannot fail here; it simply hashes as itself.
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def _derive(password: bytes, salt: bytes, length: int, m: int, t: int, p: int) -> bytes:
    kdf = Argon2id(salt=salt, length=length, iterations=t, lanes=p, memory_cost=m)
    return kdf.derive(password)


def hash_password(password: str) -> str:
    """The PHC string to store for `password`; Invalid if it is not 1..256 characters."""
    secret = _password_bytes(password)
    salt = secrets.token_bytes(ARGON2_SALT_BYTES)
    m, t, p = ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES
    digest = _derive(secret, salt, ARGON2_HASH_BYTES, m, t, p)
    return f"$argon2id$v={ARGON2_VERSION}$m={m},t={t},p={p}${_b64encode(salt)}${_b64encode(digest)}"


@dataclass(frozen=True)
class _Stored:
    memory_kib: int
    iterations: int
    lanes: int
    salt: bytes
    digest: bytes


def _parse(stored: str) -> _Stored:
    match = _PHC.fullmatch(stored) if isinstance(stored, str) else None
    if match is None:
        raise ValueError("stored password hash is not an $argon2id$ PHC string")
    fields = [match[k] for k in ("v", "m", "t", "p")]
    if any(len(f) > 10 or (len(f) > 1 and f[0] == "0") for f in fields):
        raise ValueError("bad number in stored password hash")
    v, m, t, p = (int(f) for f in fields)
    if v != ARGON2_VERSION:
        raise ValueError(f"unsupported Argon2 version {v} in stored password hash")
    if not 1 <= p <= _MAX_LANES:
        raise ValueError(f"Argon2 lanes {p} out of range in stored password hash")
    if not 1 <= t <= _MAX_ITERATIONS:
        raise ValueError(f"Argon2 iterations {t} out of range in stored password hash")
    if not 8 * p <= m <= _MAX_MEMORY_KIB:
        raise ValueError(f"Argon2 memory {m} KiB out of range in stored password hash")
    salt = _b64decode(match["salt"])
    digest = _b64decode(match["hash"])
    if not 8 <= len(salt) <= 64:
        raise ValueError("salt length out of range in stored password hash")
    if not 16 <= len(digest) <= 64:
        raise ValueError("hash length out of range in stored password hash")
    return _Stored(m, t, p, salt, digest)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from, re-derived with the stored
    parameters and compared in constant time. Invalid if the password is not 1..256
    characters (no stored hash can match such a password); ValueError if `stored` is not a
    well-formed string from `hash_password`."""
    record = _parse(stored)
    secret = _password_bytes(password)
    candidate = _derive(
        secret, record.salt, len(record.digest), record.memory_kib, record.iterations, record.lanes
    )
    return hmac.compare_digest(candidate, record.digest)


# 32 symbols without the look-alikes 0/O/o, 1/l/I: 5 bits each, lower case so it is easy to type
# on a phone. 16 symbols in 4 groups of 4 give 80 bits of entropy.
PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_GROUPS = 4
_GROUP_CHARS = 4


def generate_password() -> str:
    """A strong password to show once, like `k7wd-m2xq-9fha-tr4e` (80 bits)."""
    return "-".join(
        "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(_GROUP_CHARS))
        for _ in range(_GROUPS)
    )


# --- host keys and the operator token ------------------------------------------------------


def new_secret() -> str:
    """A new host key or operator token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """What is stored for a secret: its SHA-256, lower-case hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def secret_matches(secret: str, digest: str) -> bool:
    """Whether `secret` is the one `digest` was made from, in constant time. ValueError if
    `digest` is not 64 lower-case hex characters (a corrupted record, never a match)."""
    if not isinstance(digest, str) or _HEX_DIGEST.fullmatch(digest) is None:
        raise ValueError("stored secret digest is not 64 lower-case hex characters")
    if not isinstance(secret, str):
        return False
    return hmac.compare_digest(secret_digest(secret).encode("ascii"), digest.encode("ascii"))


class VerifiedPasswords:
    """Passwords that verified against a stored hash, remembered as HMAC-SHA256 under a key
    that exists only in this process's memory, so a repeat join with the same password is
    one HMAC instead of one Argon2 derivation. Only passwords that matched are remembered,
    and a mismatch says nothing (the caller then runs the full verification), so this gives a
    guesser no shortcut. At most `max_entries`, the least recently used dropped first; keyed
    by the stored hash too, so a changed password is never matched against an old entry."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._tags: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.max_entries = max_entries

    def _tag(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), "sha256").digest()

    def matches(self, scope: str, stored: str, password: str) -> bool:
        tag = self._tags.get((scope, stored))
        if tag is None:
            return False
        self._tags.move_to_end((scope, stored))
        return hmac.compare_digest(tag, self._tag(password))

    def add(self, scope: str, stored: str, password: str) -> None:
        self._tags[(scope, stored)] = self._tag(password)
        self._tags.move_to_end((scope, stored))
        while len(self._tags) > self.max_entries:
            self._tags.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tags)

    def __repr__(self) -> str:
        return f"VerifiedPasswords({len(self._tags)} remembered)"


# --- throttling failures per client --------------------------------------------------------


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


# --- proof of work on password joins -------------------------------------------------------

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

    def require(self, meeting_id: str, proof: object, now: float) -> None:
        """Pass if the meeting needs no proof of work now, or `proof` is a good one, which is
        then spent; otherwise ProofOfWorkRequired (428) with a fresh challenge and why, or
        Invalid (422) for a proof that is not {"challenge": str, "nonces": [int, ...]}."""
        needed = self.difficulty(meeting_id, now)
        if needed == 0:
            return  # a proof sent anyway is neither checked nor spent
        if proof is None:
            self._refuse(meeting_id, "this meeting is seeing many failed joins", now)
        text, nonces = _proof_fields(proof)
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

    def begin(self, meeting_id: str, proof: object, now: float) -> None:
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


def _proof_fields(proof: object) -> tuple[str, list[int]]:
    """The challenge and nonces of a proof as the join takes it; Invalid otherwise."""
    shape = 'proof_of_work must be {"challenge": string, "nonces": [integers]}'
    if not isinstance(proof, Mapping) or set(proof) != {"challenge", "nonces"}:
        raise Invalid(shape)
    text, nonces = proof["challenge"], proof["nonces"]
    if not isinstance(text, str) or not 1 <= len(text) <= puzzle.MAX_CHALLENGE_CHARS:
        raise Invalid(shape)
    if not isinstance(nonces, list | tuple) or not 1 <= len(nonces) <= puzzle.MAX_SOLUTIONS:
        raise Invalid(f"proof_of_work.nonces must hold 1 to {puzzle.MAX_SOLUTIONS} integers")
    for nonce in nonces:
        if isinstance(nonce, bool) or not isinstance(nonce, int):
            raise Invalid(shape)
        if not 0 <= nonce < puzzle.NONCE_LIMIT:
            raise Invalid("proof_of_work.nonces must be integers from 0 to 2**53 - 1")
    return text, list(nonces)


def _solves(text: str, nonces: list[int], decoded: _Decoded) -> bool:
    """`solutions` nonces, strictly increasing (so distinct), each a solution."""
    if len(nonces) != decoded.solutions:
        return False
    if any(b <= a for a, b in zip(nonces, nonces[1:], strict=False)):
        return False
    return all(puzzle.is_solution(text, n, decoded.difficulty) for n in nonces)
