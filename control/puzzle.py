"""The proof of work a password join carries while its meeting is under attack: what a
solution is, and a solver. control/auth.py issues the challenges and checks the proofs;
control/client.py (and so `relay join`) solves them. Standard library only, so the client
needs nothing more; README.md ("Proof of work") describes the same algorithm for other
clients, a web page say.

The puzzle, given a challenge C (an ASCII string of at most 128 characters), a difficulty d
and a count k: find k nonces n_1 < n_2 < ... < n_k, integers with 0 <= n < 2**53, such that
for each, SHA-256(C || n), n written as 8 bytes big-endian, begins with at least d zero
bits. The expected work is k * 2**d hashes; checking a proof is k hashes.

Why k solutions of d bits rather than one of d + log2(k) bits (hashcash, Back 2002): the
number of tries to one solution is geometric, with a long tail (one solve in 100 takes 4.6
times the mean), so a bound on the honest client's delay forces a small mean, and the mean is
what each guess costs the attacker. The tries to k solutions are a sum of k geometrics
(Juels and Brainard, "Client puzzles", NDSS 1999, split a puzzle into sub-puzzles for the
same reason): with k = 32 one solve in 100 takes 1.45 times the mean and one in 1,000 1.63
times (measured by sampling the Gamma(32) distribution they approach), so for the same bound
the mean, the attacker's cost per guess, can be three times higher.

Why nonces below 2**53: they travel as JSON numbers, which JavaScript reads exactly only up to
there. Why the challenge's own characters are hashed (not its decoded bytes): a client hashes
the string it was given and needs no base64 decoder.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = [
    "ALGORITHM",
    "MAX_CLIENT_WORK",
    "MAX_SOLUTIONS",
    "NONCE_LIMIT",
    "digest",
    "is_solution",
    "solve",
]

ALGORITHM = "sha256-k-nonces"  # the name the API's error carries, for clients to recognise
NONCE_LIMIT = 1 << 53
MAX_SOLUTIONS = 64  # the most nonces a proof may carry
MAX_CHALLENGE_CHARS = 128
# The most expected hashes a client agrees to compute (2**26: about 25 s for this Python
# solver, 3 s for native code): a server asking for more is broken or hostile, and a client
# should say so instead of spinning.
MAX_CLIENT_WORK = 1 << 26

_NONCE = struct.Struct(">Q")


def _prefix(challenge: str) -> hashlib._Hash:
    if not isinstance(challenge, str) or not challenge.isascii():
        raise ValueError("a challenge is an ASCII string")
    if not 1 <= len(challenge) <= MAX_CHALLENGE_CHARS:
        raise ValueError(f"a challenge is 1 to {MAX_CHALLENGE_CHARS} characters long")
    return hashlib.sha256(challenge.encode("ascii"))


def _threshold(difficulty: int) -> bytes:
    """The digests with at least `difficulty` leading zero bits are exactly those below this
    value (compared as 32-byte big-endian numbers, which is how bytes compare)."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        raise ValueError("the difficulty is an integer")
    if not 0 <= difficulty <= 255:
        raise ValueError("the difficulty is 0 to 255 leading zero bits")
    if difficulty == 0:
        return b"\xff" * 33  # above every 32-byte digest
    return (1 << (256 - difficulty)).to_bytes(32, "big")


def digest(challenge: str, nonce: int) -> bytes:
    """SHA-256(challenge || nonce as 8 bytes big-endian)."""
    h = _prefix(challenge)
    h.update(_NONCE.pack(nonce))
    return h.digest()


def is_solution(challenge: str, nonce: int, difficulty: int) -> bool:
    """Whether SHA-256(challenge || nonce) begins with `difficulty` zero bits."""
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < NONCE_LIMIT:
        return False
    return digest(challenge, nonce) < _threshold(difficulty)


def solve(challenge: str, difficulty: int, solutions: int) -> list[int]:
    """The first `solutions` nonces, counting up from 0, that solve the challenge.

    ValueError for a puzzle no honest server asks for: more than MAX_SOLUTIONS nonces, or more
    than MAX_CLIENT_WORK expected hashes."""
    limit = _threshold(difficulty)
    if isinstance(solutions, bool) or not isinstance(solutions, int):
        raise ValueError("the number of solutions is an integer")
    if not 1 <= solutions <= MAX_SOLUTIONS:
        raise ValueError(f"a proof holds 1 to {MAX_SOLUTIONS} nonces, not {solutions}")
    if solutions << difficulty > MAX_CLIENT_WORK:
        raise ValueError(
            f"a proof of work of {solutions} x 2**{difficulty} hashes is more than this client "
            f"computes (2**{MAX_CLIENT_WORK.bit_length() - 1})"
        )
    prefix = _prefix(challenge)
    # The loop is the client's whole cost: one copy of the hashed prefix, one update and one
    # comparison per try, no allocation beyond the digest (about 2.8 million tries a second
    # on one core of the development machine).
    pack, copy = _NONCE.pack, prefix.copy
    found: list[int] = []
    nonce = 0
    while len(found) < solutions:
        h = copy()
        h.update(pack(nonce))
        if h.digest() < limit:
            found.append(nonce)
        nonce += 1
        if nonce >= NONCE_LIMIT:  # never in practice: 2**53 tries
            raise ValueError("no solution below 2**53")
    return found
