"""control.auth: password hashing, secrets, and the failed-join throttle (all sans-IO)."""

from __future__ import annotations

import base64
import math
import re

import pytest
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from control import auth
from control.auth import (
    FailureThrottle,
    client_key,
    generate_password,
    hash_password,
    new_secret,
    secret_digest,
    secret_matches,
    verify_password,
)
from control.errors import Invalid, Throttled

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


def test_success_clears_the_client_but_not_the_meeting() -> None:
    t = FailureThrottle(meeting_threshold=6)
    for _ in range(4):
        t.failure("m", "a", 0.0)
    t.success("m", "a", 0.0)
    t.failure("m", "a", 1.0)  # would have been the fifth
    t.check("m", "a", 1.0)
    assert t.status("m", 1.0)["recent_failures"] == 5
    t.failure("m", "b", 1.0)  # the sixth for the meeting
    with pytest.raises(Throttled, match="joins are paused"):
        t.check("m", "a", 1.0)


def test_meeting_wide_lockout_from_many_clients() -> None:
    t = FailureThrottle()
    for i in range(49):
        t.check("m", f"10.0.0.{i}", 10.0)
        t.failure("m", f"10.0.0.{i}", 10.0)
    t.check("m", "10.0.1.1", 10.0)
    t.failure("m", "10.0.0.49", 10.0)  # the 50th, from a 50th address
    with pytest.raises(Throttled, match=r"this meeting; joins are paused for 1 s") as info:
        t.check("m", "10.0.1.1", 10.0)  # even a client that never failed
    assert info.value.retry_after == pytest.approx(1.0)
    t.check("other", "10.0.1.1", 10.0)  # other meetings are not affected
    t.check("m", "10.0.1.1", 11.0)
    t.failure("m", "10.0.1.2", 11.0)  # the next failure doubles it
    assert _retry_after(t, "m", "10.0.1.3", 11.0) == pytest.approx(2.0)


def test_status_reflects_the_lockout() -> None:
    t = FailureThrottle(meeting_threshold=3)
    assert t.status("m", 0.0) == {"locked_out": False, "retry_after": 0.0, "recent_failures": 0}
    t.failure("m", "a", 0.0)
    t.failure("m", "b", 0.0)
    assert t.status("m", 0.0) == {"locked_out": False, "retry_after": 0.0, "recent_failures": 2}
    t.failure("m", "c", 0.0)
    s = t.status("m", 0.5)
    assert s["locked_out"] is True
    assert s["retry_after"] == pytest.approx(0.5)
    assert s["recent_failures"] == 3
    assert t.status("m", 1.0)["locked_out"] is False
    assert t.status("m", 1.0)["recent_failures"] == 3
    assert t.status("m", 61.0) == {"locked_out": False, "retry_after": 0.0, "recent_failures": 0}
    assert t.status("never", 0.0)["recent_failures"] == 0


def test_the_longer_lockout_is_reported() -> None:
    t = FailureThrottle(meeting_threshold=5)
    for _ in range(6):
        t.failure("m", "a", 0.0)  # client and meeting both at 2 s
    with pytest.raises(Throttled, match="from your address; try again in 2 s"):
        t.check("m", "a", 0.0)
    t.failure("m", "b", 0.0)  # meeting now at 4 s
    with pytest.raises(Throttled, match="joins are paused for 4 s"):
        t.check("m", "a", 0.0)


def test_memory_is_bounded_least_recently_used_first() -> None:
    t = FailureThrottle(max_entries=10, meeting_threshold=1000)
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
    t = FailureThrottle(meeting_threshold=1000)
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


def test_an_hour_of_guessing_gets_a_few_dozen_guesses() -> None:
    """bench/guessing.py: an attacker retrying the moment the throttle lets it, for an hour
    against one meeting. The figures are in docs/RELIABILITY.md."""
    from bench.guessing import guesses_per_hour

    assert guesses_per_hour(new_address_each_time=False) <= 30
    assert guesses_per_hour(new_address_each_time=True) <= 100
