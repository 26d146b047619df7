"""A throwaway PostgreSQL server: for the tests (tests/pg_server.py's fixture) and for the
benchmarks of several nodes sharing one database (bench/nodes.py).

`PostgresServer.start()` runs `initdb` into a fresh temporary directory and starts the server
with `pg_ctl`, listening on a Unix socket in that directory and on a free TCP port of 127.0.0.1,
with `fsync=off` (nothing here needs to survive a crash). Its superuser is `relay`, trusted
without a password. `new_database()` creates an empty database and returns its URL;
`stop()` stops the server and deletes the directory.

PostgreSQL's programs are found on PATH or under /usr/lib/postgresql/*/bin (Debian's layout,
newest version first). PostgreSQL refuses to run as root, so as root they run as the `postgres`
account through `runuser` (the directory is mode 0777 so that account can use it). They never
inherit LD_PRELOAD, ASAN_OPTIONS or UBSAN_OPTIONS: the debug test run preloads AddressSanitizer,
which hangs initdb's bootstrap backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg

__all__ = [
    "PostgresServer",
    "PostgresUnavailable",
    "find_programs",
]

USER = "relay"
"""The server's superuser, which the tests connect as (trusted: no password)."""

START_ATTEMPTS = 3  # a free port may be taken between choosing it and the server binding it
TIMEOUT_S = 120

_SANITIZER_VARIABLES = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")

T = TypeVar("T")


class PostgresUnavailable(Exception):
    """PostgreSQL's programs (or an account to run them as) are not on this machine."""


def find_programs() -> tuple[str, str] | None:
    """Paths of `initdb` and `pg_ctl`: from PATH, else from the newest
    /usr/lib/postgresql/VERSION/bin that has both; None if neither has them."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is not None and pg_ctl is not None:
        return initdb, pg_ctl

    def version(bin_dir: str) -> tuple[int, ...]:
        name = Path(bin_dir).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for bin_dir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        initdb, pg_ctl = (os.path.join(bin_dir, p) for p in ("initdb", "pg_ctl"))
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def _run_user_prefix() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a user it accepts."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        runuser = None
    if runuser is None:
        raise PostgresUnavailable(
            "running as root, and there is no postgres account (or no runuser) to run "
            "PostgreSQL as: it refuses to run as root"
        )
    return [runuser, "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end from synchronous code, even when called from inside an
    event loop (then on a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class PostgresServer:
    """A running throwaway server. Make one with `PostgresServer.start()`; it is a context
    manager that stops it."""

    def __init__(self, root: Path, port: int, pg_ctl: str, prefix: list[str], env: dict[str, str]):
        """Use `start()`."""
        self.root = root
        self.data = root / "data"
        self.socket_dir = root
        self.port = port
        self._pg_ctl = pg_ctl
        self._prefix = prefix
        self._env = env
        self._numbers = itertools.count(1)
        self._stopped = False

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb and start a server in a new temporary directory.

        Raises:
            PostgresUnavailable: PostgreSQL's programs are not installed, or there is no
                account to run them as.
            RuntimeError: they are installed but the server did not start (the message
                holds their output and the server's log).
        """
        programs = find_programs()
        if programs is None:
            raise PostgresUnavailable(
                "PostgreSQL's initdb and pg_ctl are not installed (looked on PATH and in "
                "/usr/lib/postgresql/*/bin)"
            )
        initdb, pg_ctl = programs
        prefix = _run_user_prefix()
        env = {k: v for k, v in os.environ.items() if k not in _SANITIZER_VARIABLES}
        env["LC_ALL"] = "C"
        # A directory of its own that the postgres account can reach (pytest's is 0700).
        root = Path(tempfile.mkdtemp(prefix="relay-pg-"))
        try:
            os.chmod(root, 0o777)
            server = cls(root, 0, pg_ctl, prefix, env)
            server._program(initdb, "-D", str(server.data), "-A", "trust", "-U", USER, "-E", "UTF8")
            for attempt in range(1, START_ATTEMPTS + 1):
                server.port = _free_port()
                started = server._pg_ctl_start()
                if started.returncode == 0:
                    return server
                if attempt == START_ATTEMPTS:
                    log = root / "server.log"
                    raise RuntimeError(
                        f"PostgreSQL did not start: {started.stdout}{started.stderr}\n"
                        + (log.read_text(errors="replace") if log.exists() else "")
                    )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        raise AssertionError("unreachable")

    def _program(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._prefix, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=self._env,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stdout}{done.stderr}")
        return done

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.root / "server.log")
        return self._program(
            self._pg_ctl,
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            log,
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )

    def url_of(self, database: str) -> str:
        """The URL of a database on this server, over TCP on 127.0.0.1."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The URL of the server's `postgres` database (new_database() gives fresh ones)."""
        return self.url_of("postgres")

    def new_database(self, prefix: str = "relay_test") -> str:
        """Create an empty database with a name not used before; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._numbers)}"

        async def create() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        _run_async(create)
        return self.url_of(name)

    def stop(self) -> None:
        """Stop the server (at once: nothing in it needs keeping) and delete its directory.
        Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._program(
                self._pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
