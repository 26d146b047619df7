"""control.auth: password hashing, secrets, the per-client throttle and the proof of work that
password joins need while a meeting is under attack (all sans-IO), and control.puzzle."""

from __future__ import annotations

import base64
import hashlib
import math
import re

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from pydantic import ValidationError

from control import auth, proof_of_work, puzzle
from control.api.requests import JoinIn
from control.auth import (
    generate_password,
    hash_password,
    new_secret,
    secret_digest,
    secret_matches,
    verify_password,
)
from control.errors import Invalid, ProofOfWorkRequired, Throttled
from control.proof_of_work import JoinPuzzles, Proof
from control.throttle import FailureThrottle, client_key

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

# --- passwords (each Argon2id hash costs tens of ms: keep these few) -------------------------


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse")


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def test_hash_format_and_round_trip(stored: str) -> None:
    m = re.fullmatch(
        r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)", stored
    )
    assert m is not None, stored
    assert (int(m[1]), int(m[2]), int(m[3])) == (
        auth.ARGON2_MEMORY_KIB,
        auth.ARGON2_ITERATIONS,
        auth.ARGON2_LANES,
    )
    assert len(base64.b64decode(m[4] + "==")) == 16
    assert verify_password("correct horse", stored)
    # The standard PHC form: the library's own verifier accepts it.
    Argon2id.verify_phc_encoded(b"correct horse", stored)


def test_wrong_password_is_false(stored: str) -> None:
    assert not verify_password("correct horsE", stored)
    assert not verify_password("correct horse ", stored)


def test_same_password_hashes_differently(stored: str) -> None:
    again = hash_password("correct horse")
    assert again != stored
    assert again.split("$")[4] != stored.split("$")[4]  # the salt differs
    assert verify_password("correct horse", again)


def test_tampered_stored_string_refuses_or_fails(stored: str) -> None:
    prefix, digest = stored.rsplit("$", 1)
    raw = bytearray(base64.b64decode(digest + "=="))
    raw[0] ^= 1
    assert not verify_password("correct horse", f"{prefix}${_b64(bytes(raw))}")
    salt = stored.split("$")[4]
    other_salt = _b64(bytes(b ^ 0xFF for b in base64.b64decode(salt + "==")))
    assert not verify_password("correct horse", stored.replace(salt, other_salt))
    malformed = [
        "",
        "plaintext",
        stored.replace("argon2id", "argon2i"),
        stored.replace("v=19", "v=16"),
        stored.replace("$m=", "$x="),
        stored.replace(f"m={auth.ARGON2_MEMORY_KIB}", "m=99999999999"),  # absurd memory
        stored.replace(f"m={auth.ARGON2_MEMORY_KIB}", "m=4"),  # below 8 KiB per lane
        stored.replace(f"t={auth.ARGON2_ITERATIONS}", "t=0"),
        stored.replace(f"p={auth.ARGON2_LANES}", "p=0"),
        stored + "$",
        stored[:-1] + "*",  # not base64
        stored[:-2],  # a length no base64 encoder writes
        prefix + "$" + _b64(b"short"),  # a 5-byte hash
        # Same bytes, but spare bits set that no encoder writes: a tampered string.
        prefix + "$" + digest[:-1] + _B64[_B64.index(digest[-1]) + 1],
    ]
    for bad in malformed:
        with pytest.raises(ValueError):
            verify_password("correct horse", bad)


def test_parameters_are_read_from_the_stored_string() -> None:
    salt = bytes(range(16))
    kdf = Argon2id(salt=salt, length=24, iterations=2, lanes=2, memory_cost=1024)
    other = kdf.derive_phc_encoded(b"hunter2")
    assert "m=1024,t=2,p=2" in other
    assert verify_password("hunter2", other)
    assert not verify_password("hunter3", other)


def test_password_length_limits() -> None:
    with pytest.raises(Invalid, match=r"1 to 256 characters.*got 0"):
        hash_password("")
    with pytest.raises(Invalid, match=r"1 to 256 characters.*got 257"):
        hash_password("x" * 257)
    with pytest.raises(Invalid, match="1 to 256"):
        verify_password("", "$argon2id$v=19$m=1024,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43)
    assert Invalid("x").status == 422


def test_password_limits_are_inclusive_and_unicode_is_normalised() -> None:
    long = "é" * 256  # 256 characters, 512 bytes
    assert verify_password(long, hash_password(long))
    # "é" as one code point and as e + combining accent is the same password.
    assert verify_password("caf\u00e9", hash_password("cafe\u0301"))


def test_generate_password_format_and_uniqueness() -> None:
    draws = [generate_password() for _ in range(1000)]
    pattern = re.compile(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}")
    for pw in draws:
        assert pattern.fullmatch(pw), pw
        assert not set(pw) & set("0O1lIo"), pw
    assert len(set(draws)) == 1000
    assert len(set(auth.PASSWORD_ALPHABET)) == len(auth.PASSWORD_ALPHABET) == 32
    assert 16 * math.log2(len(auth.PASSWORD_ALPHABET)) >= 70
    # Every symbol of the alphabet shows up over 16000 draws (nothing is stuck).
    assert set("".join(draws).replace("-", "")) == set(auth.PASSWORD_ALPHABET)


# --- secrets -------------------------------------------------------------------------------


def test_secret_digest_and_match() -> None:
    secret = new_secret()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert new_secret() != secret
    digest = secret_digest(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret not in digest
    assert (
        secret_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert secret_matches(secret, digest)
    assert not secret_matches(secret + "x", digest)
    assert not secret_matches("", digest)
    assert not secret_matches("\ud800", digest)  # a lone surrogate is just a wrong secret
    for bad in ("", "xyz", digest.upper(), digest[:-1]):
        with pytest.raises(ValueError):
            secret_matches(secret, bad)


def test_client_key() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("not an address") == "not an address"


# --- throttle ------------------------------------------------------------------------------


def _retry_after(throttle: FailureThrottle, meeting: str, client: str, now: float) -> float:
    with pytest.raises(Throttled) as info:
        throttle.check(meeting, client, now)
    return info.value.retry_after


def test_five_failures_lock_the_client_for_one_second() -> None:
    t = FailureThrottle()
    for i in range(4):
        t.check("m", "a", 100.0 + i)
        t.failure("m", "a", 100.0 + i)
    t.check("m", "a", 104.0)  # 4 failures: still allowed
    t.failure("m", "a", 104.0)
    with pytest.raises(Throttled, match=r"from your address.*1 s") as info:
        t.check("m", "a", 104.0)
    assert info.value.retry_after == pytest.approx(1.0)
    assert info.value.status == 429
    assert _retry_after(t, "m", "a", 104.25) == pytest.approx(0.75)
    t.check("m", "a", 105.0)  # the lockout is over
    t.check("m", "b", 104.5)  # another client is not affected
    t.check("other", "a", 104.5)  # nor the same client for another meeting


def test_many_clients_failing_lock_out_only_themselves() -> None:
    """The attacker's review: 50 failures from 10 addresses locked the whole meeting. Now each
    address locks itself out and nobody else."""
    t = FailureThrottle()
    for i in range(50):
        t.failure("m", f"10.0.0.{i % 10}", 10.0)
    t.check("m", "10.0.1.1", 10.0)  # a client that never failed
    assert t.wait("m", "10.0.1.1", 10.0) == 0.0
    for i in range(10):
        with pytest.raises(Throttled, match="from your address"):
            t.check("m", f"10.0.0.{i}", 10.0)


def test_attempts_in_flight_count_so_a_burst_cannot_slip_through() -> None:
    t = FailureThrottle()
    for _ in range(3):
        t.failure("m", "a", 0.0)
    t.begin("m", "a", 0.0)
    t.begin("m", "a", 0.0)  # 3 failures and 2 in flight: as many as may fail
    with pytest.raises(Throttled, match="too many at once; try again in 1 s") as info:
        t.begin("m", "a", 0.0)
    assert info.value.retry_after == 1.0
    t.begin("m", "b", 0.0)  # another client is not affected
    t.end("m", "a", 0.1, failed=False)  # a success: room for one more
    t.begin("m", "a", 0.1)
    t.end("m", "a", 0.2, failed=True)
    t.end("m", "a", 0.2, failed=True)  # 5 failures: locked out
    with pytest.raises(Throttled, match="from your address; try again in 1 s"):
        t.begin("m", "a", 0.2)
    assert t._in_flight == {("m", "b"): 1}
    t.end("m", "b", 0.2, failed=False)
    assert t._in_flight == {}


def test_a_custom_refusal_names_what_failed() -> None:
    t = FailureThrottle(refusal="too many wrong keys or tokens from your address")
    for _ in range(5):
        t.failure("", "a", 0.0)
    with pytest.raises(Throttled, match=r"^too many wrong keys or tokens from your address; try"):
        t.check("", "a", 0.0)


def test_lockout_doubles_up_to_the_cap() -> None:
    t = FailureThrottle()
    now = 0.0
    for _ in range(5):
        t.failure("m", "a", now)
    expected = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0, 300.0]
    seen = []
    for i, want in enumerate(expected):
        wait = _retry_after(t, "m", "a", now)
        seen.append(wait)
        assert wait == pytest.approx(want), (i, seen)
        now += wait
        t.check("m", "a", now)  # allowed again, and it fails again
        t.failure("m", "a", now)
    assert max(seen) == 300.0


def test_failures_older_than_the_window_are_forgotten() -> None:
    t = FailureThrottle()
    for i in range(4):
        t.failure("m", "a", float(i))  # 0, 1, 2, 3
    t.failure("m", "a", 60.5)  # the one at 0 has left the window: 4 in the last 60 s
    t.check("m", "a", 60.5)
    t.failure("m", "a", 60.9)  # 1, 2, 3, 60.5, 60.9: five within 60 s
    assert _retry_after(t, "m", "a", 60.9) == pytest.approx(1.0)


def test_a_run_of_lockouts_is_forgotten_after_a_quiet_window() -> None:
    t = FailureThrottle()
    for _ in range(6):
        t.failure("m", "a", 0.0)
    assert _retry_after(t, "m", "a", 0.0) == pytest.approx(2.0)  # locked until 2
    # Within 60 s of the lockout's end the run goes on, and doubles:
    t.failure("m", "a", 61.0)
    assert _retry_after(t, "m", "a", 61.0) == pytest.approx(4.0)  # locked until 65
    # 60 s after that lockout ended without a failure, it is all forgotten:
    t.check("m", "a", 125.0)
    assert len(t) == 0
    t.failure("m", "a", 125.0)
    t.check("m", "a", 125.0)


def test_memory_is_bounded_least_recently_used_first() -> None:
    t = FailureThrottle(max_entries=10)
    for _ in range(5):
        t.failure("m", "victim", 0.0)  # locked out until 1.0
    for i in range(9):
        t.failure("m", f"c{i}", 0.1)
    assert len(t) == 10
    with pytest.raises(Throttled):
        t.check("m", "victim", 0.2)  # touched: now the most recently used
    t.failure("m", "new", 0.3)  # evicts c0, the least recently used, not the victim
    assert len(t) == 10
    with pytest.raises(Throttled):
        t.check("m", "victim", 0.4)
    for i in range(4):
        t.failure("m", "c0", 0.5 + i / 100)  # c0 starts over: it was forgotten
    t.check("m", "c0", 0.6)
    for i in range(20):
        t.failure("m", f"flood{i}", 0.7)
    assert len(t) == 10
    t.check("m", "victim", 0.8)  # evicted by the flood: forgotten


def test_expired_records_are_dropped_as_you_go() -> None:
    t = FailureThrottle()
    for i in range(100):
        t.failure("m", f"c{i}", 0.0)
    assert len(t) == 100
    t.check("m", "someone", 61.0)
    assert len(t) == 0
    # An expired record that is not the least recently used is dropped when it is looked up.
    t.failure("m", "a", 100.0)
    t.failure("m", "b", 130.0)
    t.check("m", "a", 140.0)  # "a" is now the most recently used, "b" the least
    t.check("m", "a", 160.0)  # 60 s after its failure: forgotten
    assert len(t) == 1


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        FailureThrottle(client_threshold=0)
    with pytest.raises(ValueError):
        JoinPuzzles(threshold=0)
    with pytest.raises(ValueError):
        JoinPuzzles(min_bits=17, max_bits=16)
    with pytest.raises(ValueError):
        JoinPuzzles(solutions=65)
    with pytest.raises(ValueError):
        JoinPuzzles(solutions=64, max_bits=21)  # 2**27 hashes: more than clients solve
    with pytest.raises(ValueError):
        JoinPuzzles(ttl=0)
    with pytest.raises(ValueError):
        FailureThrottle(base_lockout=10.0, max_lockout=5.0)
    with pytest.raises(ValueError):
        FailureThrottle(max_entries=0)


def test_verified_passwords_remember_only_what_matched_and_stay_bounded() -> None:
    cache = auth.VerifiedPasswords(max_entries=2)
    assert not cache.matches("m1", "hash1", "pw")
    cache.add("m1", "hash1", "pw")
    assert cache.matches("m1", "hash1", "pw")
    assert not cache.matches("m1", "hash1", "pw ")  # another password: full check needed
    assert not cache.matches("m1", "hash2", "pw")  # the stored hash changed
    assert not cache.matches("m2", "hash1", "pw")  # another meeting
    assert "pw" not in repr(cache)
    cache.add("m2", "hash2", "x")
    cache.matches("m1", "hash1", "pw")  # m1 is now the most recently used
    cache.add("m3", "hash3", "y")
    assert len(cache) == 2
    assert cache.matches("m1", "hash1", "pw") and not cache.matches("m2", "hash2", "x")
    # Two caches (two processes) do not share their key: the tags differ.
    other = auth.VerifiedPasswords()
    other.add("m1", "hash1", "pw")
    assert other._tags[("m1", "hash1")] != cache._tags[("m1", "hash1")]


# --- the proof of work (control/puzzle.py, control/proof_of_work.py) ------------------------


def test_the_readme_example_and_the_solver() -> None:
    """README.md, "Proof of work", shows this example for other implementations to check."""
    assert puzzle.solve("relay-example-challenge", 8, 4) == [47, 99, 423, 591]
    assert (
        puzzle.digest("relay-example-challenge", 47).hex()
        == hashlib.sha256(b"relay-example-challenge" + (47).to_bytes(8, "big")).hexdigest()
    )
    assert puzzle.digest("relay-example-challenge", 47).hex().startswith("00")
    assert puzzle.is_solution("relay-example-challenge", 99, 8)
    assert not puzzle.is_solution("relay-example-challenge", 98, 8)
    assert not puzzle.is_solution("relay-example-challenge", 99, 16)
    assert not puzzle.is_solution("relay-example-challenge", -1, 0)
    assert not puzzle.is_solution("relay-example-challenge", 1 << 53, 0)
    assert not puzzle.is_solution("relay-example-challenge", True, 0)
    # Every nonce the solver skipped is not a solution: it returns the first ones.
    assert [n for n in range(592) if puzzle.is_solution("relay-example-challenge", n, 8)] == [
        47,
        99,
        423,
        591,
    ]
    # It refuses what no honest server asks for, instead of spinning.
    with pytest.raises(ValueError, match="more than this client computes"):
        puzzle.solve("x", 30, 32)
    with pytest.raises(ValueError, match="1 to 64 nonces"):
        puzzle.solve("x", 1, 65)
    with pytest.raises(ValueError, match="ASCII"):
        puzzle.solve("é", 1, 1)


def _solved(puzzles: JoinPuzzles, meeting: str, now: float) -> Proof:
    """A fresh challenge for the meeting, solved: a proof as a join carries it."""
    with pytest.raises(ProofOfWorkRequired) as info:
        puzzles.require(meeting, None, now)
    body = info.value.body()["error"]
    challenge, bits, count = body["challenge"], body["difficulty"], body["solutions"]
    assert isinstance(challenge, str) and isinstance(bits, int) and isinstance(count, int)
    return Proof(challenge, tuple(puzzle.solve(challenge, bits, count)))


def _attack(puzzles: JoinPuzzles, meeting: str, failures: int, now: float) -> None:
    for _ in range(failures):
        puzzles.failure(meeting, now)


def test_no_proof_below_the_threshold_then_the_difficulty_doubles_and_caps() -> None:
    p = JoinPuzzles()
    assert p.status("m", 0.0) == {
        "locked_out": False,
        "retry_after": 0.0,
        "recent_failures": 0,
        "proof_of_work": False,
        "difficulty": 0,
        "solutions": 0,
    }
    _attack(p, "m", 9, 0.0)
    p.require("m", None, 0.0)  # 9 recent failures: no proof needed
    p.failure("m", 0.0)
    with pytest.raises(ProofOfWorkRequired) as info:
        p.require("m", None, 0.0)
    error = info.value
    assert (error.status, error.code) == (428, "proof_of_work_required")
    assert error.body()["error"] == {
        "code": "proof_of_work_required",
        "message": error.message,
        "algorithm": "sha256-k-nonces",
        "challenge": error.puzzle["challenge"],
        "difficulty": proof_of_work.POW_MIN_BITS,
        "solutions": proof_of_work.POW_SOLUTIONS,
        "expires_in": proof_of_work.POW_TTL,
    }
    assert "many failed joins" in error.message
    # each doubling of the recent failures adds a bit (doubles the work), up to the cap
    assert [p.difficulty_for(n) for n in (9, 10, 19, 20, 39, 40, 80, 160, 320, 10**9)] == [
        0,
        12,
        12,
        13,
        13,
        14,
        15,
        16,
        16,
        16,
    ]
    assert p.status("m", 0.5)["difficulty"] == 12 and p.status("m", 0.5)["proof_of_work"]
    p.require("other", None, 0.0)  # another meeting is calm
    # failures leave the ten-minute window (counted in buckets of 10 s): the meeting is calm
    assert proof_of_work.POW_WINDOW == 600.0
    assert p.recent_failures("m", 599.9) == 10
    assert p.recent_failures("m", 600.0) == 0
    p.require("m", None, 600.0)


def test_checks_in_flight_count_towards_the_difficulty() -> None:
    p = JoinPuzzles(min_bits=4, max_bits=8, solutions=4)
    _attack(p, "m", 8, 0.0)
    p.begin("m", None, 0.0)
    p.begin("m", None, 0.0)  # 8 failures and 2 checks in flight: a proof for the next
    with pytest.raises(ProofOfWorkRequired):
        p.begin("m", None, 0.0)
    p.end("m", 0.0, failed=False)
    p.begin("m", None, 0.0)  # one turned out right: room again
    p.end("m", 0.0, failed=False)
    p.end("m", 0.0, failed=True)
    assert p.recent_failures("m", 0.0) == 9 and p._in_flight == {}


def test_a_correct_proof_is_accepted_once() -> None:
    p = JoinPuzzles(min_bits=6, max_bits=8, solutions=8)
    _attack(p, "m", 10, 100.0)
    proof = _solved(p, "m", 100.0)
    p.require("m", proof, 101.0)
    assert p.spent() == 1
    with pytest.raises(ProofOfWorkRequired, match="used already") as reused:
        p.require("m", proof, 101.5)
    assert reused.value.puzzle["challenge"] != proof.challenge  # a fresh one to solve
    p.require("m", _solved(p, "m", 102.0), 102.0)  # a new challenge: accepted


def test_wrong_expired_foreign_and_malformed_proofs_are_refused() -> None:
    p = JoinPuzzles(min_bits=6, max_bits=8, solutions=8, ttl=10.0)
    _attack(p, "m", 10, 0.0)
    _attack(p, "other", 10, 0.0)
    proof = _solved(p, "m", 0.0)
    challenge, nonces = proof

    def refused(candidate: Proof, match: str, meeting: str = "m", now: float = 1.0) -> None:
        with pytest.raises(ProofOfWorkRequired, match=match):
            p.require(meeting, candidate, now)

    wrong = [*nonces[:-1], nonces[-1] + 1]
    while puzzle.is_solution(challenge, wrong[-1], 6):
        wrong[-1] += 1
    refused(Proof(challenge, tuple(wrong)), "do not solve")
    refused(Proof(challenge, tuple(nonces[:-1])), "do not solve")  # too few
    refused(Proof(challenge, tuple([nonces[0]] * 8)), "do not solve")  # one, 8 times
    refused(Proof(challenge, tuple(nonces[::-1])), "do not solve")  # not increasing
    refused(proof, "expired", now=10.0)
    refused(proof, "not issued for this meeting", meeting="other")
    stranger = JoinPuzzles(min_bits=6, max_bits=8, solutions=8)  # another process: another key
    _attack(stranger, "m", 10, 0.0)
    refused(_solved(stranger, "m", 0.0), "not issued for this meeting")
    tampered = challenge[:-3] + ("A" if challenge[-3] != "A" else "B") + challenge[-2:]
    refused(Proof(tampered, tuple(nonces)), "not issued for this meeting")
    refused(Proof(challenge + "A", tuple(nonces)), "not issued")
    refused(Proof("x", tuple(nonces)), "not issued")
    for malformed in (
        {"challenge": challenge},
        {"challenge": challenge, "nonces": list(nonces), "extra": 1},
        {"challenge": 5, "nonces": list(nonces)},
        {"challenge": challenge, "nonces": "1,2"},
        {"challenge": challenge, "nonces": []},
        {"challenge": challenge, "nonces": [True] * 8},
        {"challenge": challenge, "nonces": [-1]},
        {"challenge": challenge, "nonces": [1 << 53]},
        "a proof",
    ):  # the shape is the API's to check (control/api/requests.py), before any service
        with pytest.raises(ValidationError, match="proof_of_work"):
            JoinIn.model_validate({"name": "n", "proof_of_work": malformed})
    assert p.spent() == 0  # nothing refused was spent...
    p.require("m", proof, 1.0)  # ...so the right proof still works, once


def test_a_proof_of_an_easier_time_is_refused_when_the_attack_grows() -> None:
    p = JoinPuzzles(min_bits=4, max_bits=10, solutions=4)
    _attack(p, "m", 10, 0.0)
    easy = _solved(p, "m", 0.0)  # 4 bits
    _attack(p, "m", 10, 0.0)  # 20 failures: 5 bits; one step of slack
    p.require("m", easy, 0.0)
    text = p.challenge("m", 0.0, 4).text  # another one of 4 bits
    easy = Proof(text, tuple(puzzle.solve(text, 4, 4)))
    _attack(p, "m", 20, 0.0)  # 40 failures: 6 bits
    with pytest.raises(ProofOfWorkRequired, match="harder") as info:
        p.require("m", easy, 0.0)
    assert info.value.puzzle["difficulty"] == 6


def test_spent_challenges_are_bounded_and_never_replayed() -> None:
    p = JoinPuzzles(min_bits=1, max_bits=1, solutions=1, max_spent=3)
    _attack(p, "m", 10, 0.0)
    proofs = [_solved(p, "m", float(i)) for i in range(5)]  # expiring at 60, 61, ... 64
    for proof in proofs:
        p.require("m", proof, 5.0)
    assert p.spent() == 3  # the two that expire first were dropped...
    for proof in proofs:  # ...and count as spent all the same
        with pytest.raises(ProofOfWorkRequired, match="used already"):
            p.require("m", proof, 6.0)
    p.require("m", _solved(p, "m", 6.0), 6.0)  # a challenge newer than those dropped works
    # spent ones are forgotten once they expire
    later = _solved(p, "m", 70.0)
    p.require("m", later, 70.0)
    assert p.spent() == 1


def test_the_failure_counts_are_bounded() -> None:
    p = JoinPuzzles(max_meetings=3)
    for i in range(5):
        _attack(p, f"m{i}", 10, 0.0)
    assert p.recent_failures("m0", 0.0) == 0  # the least recently failed, dropped
    assert p.recent_failures("m4", 0.0) == 10
    assert p.recent_failures("m4", 600.0) == 0
    assert "m4" not in repr(p) and len(p._failures) == 0  # all gone quiet, all dropped


def test_an_hour_of_guessing_is_bounded_per_address_and_a_64_counts_as_one() -> None:
    """bench/guessing.py's simulation, on the real throttle and puzzle code, with solve costs
    fixed here (the bench measures them): the figures are in docs/RELIABILITY.md."""
    from bench.guessing import Strategy, attackers, guesses_per_hour

    one, ten, thousand, one_64 = attackers()
    cost = {
        bits: 0.8 * 2.0 ** (bits - proof_of_work.POW_MAX_BITS) for bits in range(64)
    }.__getitem__
    greedy, patient = Strategy(None, False), Strategy(None, True)
    alone = guesses_per_hour(one, greedy, cost, 0.045)
    assert 20 <= alone.guesses <= 30
    assert guesses_per_hour(one_64, greedy, cost, 0.045).guesses == alone.guesses
    assert guesses_per_hour(ten, greedy, cost, 0.045).guesses <= 10 * alone.guesses
    # waiting out each run of the per-client throttle: 5 guesses a minute or so, per client
    assert 250 <= guesses_per_hour(one, patient, cost, 0.045).guesses <= 300
    # 1,000 addresses on 2 cores: every guess needs the hardest proof; the cores bound them
    shared = guesses_per_hour(thousand, Strategy(2, False), cost, 0.045)
    assert shared.hardest == proof_of_work.POW_MAX_BITS
    assert shared.guesses <= 2 * 3600 / 0.8 + 50
