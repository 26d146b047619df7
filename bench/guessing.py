"""How many password guesses the join throttle lets through in an hour (issue 8, "Password
guessing"): an attacker that retries the moment it may, each guess taking as long as one
Argon2 check (45 ms), from one address against one meeting, and from a new address for every
guess against one meeting. Computed on control.auth.FailureThrottle with a simulated clock:
the same code the API runs, without waiting an hour.

    python -m bench.guessing
"""

from __future__ import annotations

from control.auth import FailureThrottle
from control.errors import Throttled

GUESS_S = 0.045  # one Argon2id verification (control/auth.py)


def guesses_per_hour(new_address_each_time: bool, hours: float = 1.0) -> int:
    throttle = FailureThrottle()
    now, guesses, n = 0.0, 0, 0
    while now < hours * 3600:
        client = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" if new_address_each_time else "x"
        try:
            throttle.check("meeting", client, now)
        except Throttled as exc:
            now += max(exc.retry_after, 0.001)
            continue
        throttle.failure("meeting", client, now)
        guesses += 1
        n += 1
        now += GUESS_S
    return guesses


def main() -> None:
    one = guesses_per_hour(False)
    many = guesses_per_hour(True)
    print(f"one address, one meeting:            {one:,} guesses per hour")
    print(f"a new address per guess, one meeting: {many:,} guesses per hour")


if __name__ == "__main__":
    main()
