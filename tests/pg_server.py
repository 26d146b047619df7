"""The `postgres_server` fixture: a throwaway PostgreSQL server (bench/postgres.py) per test
session; each test makes a database of its own with `new_database()`.

Test modules use the fixture by importing it:

    from tests.pg_server import postgres_server  # noqa: F401

It skips the tests that need it when PostgreSQL's programs are not installed, unless
RELAY_REQUIRE_POSTGRES=1 is set (as scripts/test does where scripts/setup installs PostgreSQL):
then it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.postgres import PostgresServer, PostgresUnavailable, find_programs

__all__ = [
    "REQUIRE_ENV",
    "PostgresServer",
    "PostgresUnavailable",
    "find_programs",
    "postgres_server",
]

REQUIRE_ENV = "RELAY_REQUIRE_POSTGRES"
"""Set to 1 to make the tests that need PostgreSQL fail, rather than skip, without it."""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway server for the whole session (each test makes its own database with
    `new_database()`). Skips without PostgreSQL, or fails if RELAY_REQUIRE_POSTGRES=1."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc}; {REQUIRE_ENV}=1 requires PostgreSQL", pytrace=False)
        pytest.skip(f"{exc}; set {REQUIRE_ENV}=1 to make this a failure")
    with server:
        yield server
