"""How processes that start processes live and die: nothing outlives its parent.

`relay serve`, `relay demo` and `relay bench` start processes (the control plane, workers,
baseline relays). Two rules hold for all of them:

1. **A child ends with its parent, however the parent ends** (SIGKILL included). The parent
   starts each child with `child_env()`, which names it (RELAY_PARENT_PID); the child calls
   `bind_to_parent()` first thing. That asks the kernel for SIGTERM when the parent dies
   (prctl PR_SET_PDEATHSIG, Linux), then checks that the parent is still the one named: a
   parent that died before the prctl call would never send the signal, so an orphan at that
   point exits at once. A watcher thread backs the kernel up (and covers systems without
   prctl): once the parent is gone it sends SIGTERM itself, and if the child has not finished
   its clean-up `ORPHAN_GRACE` seconds later it exits outright, so no child holds a port or a
   file past 1 s after its parent's death. The child also never takes SIGINT: Ctrl-C in a
   terminal reaches the whole process group, and it is the parent's job to stop its children
   in order (the control plane last), not theirs to race it. `spawn` starts a child with
   SIGINT blocked, which exec keeps, so that not even an interpreter still starting (before
   any line of the child's could ignore it) dies of it with half a traceback.

   PR_SET_PDEATHSIG fires when the *thread* that forked the child ends; every command here
   starts its children from the main thread, which lives as long as the process.

2. **SIGINT and SIGTERM stop a command cleanly.** Inside `stop_on_signals()`, the first of
   them raises `Interrupted` in the main thread, wherever it is (starting, joining,
   measuring): the `with` blocks and `finally` clauses on the way out stop the children and
   remove temporary directories; later signals are ignored while that clean-up runs. The
   command then prints one line saying what it stopped and exits with 128 + the signal's
   number (130 for Ctrl-C, 143 for SIGTERM), as shells report a command a signal ended.
   `run_command` does this for a whole command (the `relay` command, a worker started as
   `python -m relay.worker`); commands that start processes catch `Interrupted` themselves,
   to say what they stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "EXIT_ORPHANED",
    "spawn",
    "ORPHAN_GRACE",
    "PARENT_ENV",
    "Interrupted",
    "bind_to_parent",
    "child_env",
    "run_command",
    "stop_on_signals",
]

PARENT_ENV = "RELAY_PARENT_PID"
ORPHAN_GRACE = 0.8  # seconds a child whose parent died has for its clean-up
WATCH_INTERVAL = 0.05  # seconds between the watcher's looks at the parent
EXIT_ORPHANED = 70  # the status of a child that found its parent gone
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


_bound = False  # bind_to_parent() made this process one a parent manages


def managed() -> bool:
    """Whether a parent started this process to manage it (its parent reports for it: a
    managed process stopped by a signal says nothing)."""
    return _bound or bool(os.environ.get(PARENT_ENV))


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child of this process: `base` (default: ours) naming this
    process as the parent the child must not outlive."""
    env = dict(os.environ if base is None else base)
    env[PARENT_ENV] = str(os.getpid())
    return env


def spawn(args: Sequence[str], *, env: Mapping[str, str] | None = None, **popen: Any) -> Any:
    """subprocess.Popen(args, ...) for a child that must end with this process: named as
    its parent (`child_env`), and started with SIGINT blocked, which it keeps across exec. A
    SIGINT this process gets meanwhile waits, blocked, and arrives as soon as the child is
    started: none is lost."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return subprocess.Popen(list(args), env=child_env(env), **popen)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ask_kernel_for_sigterm_on_parent_death() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    # The kernel has sent SIGTERM already where it could; this covers where it could not.
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE)
    os._exit(EXIT_ORPHANED)


def bind_to_parent() -> bool:
    """Make this process end with the parent that started it with `child_env()`; True if
    it was started so. A process started any other way (by hand, by a test) is left alone.
    Call it before anything that takes a port or a file; a managed process leaves SIGINT
    ignored (its parent stops it)."""
    named = os.environ.pop(PARENT_ENV, None)  # our own children get their own
    if not named:
        return False
    try:
        parent = int(named)
    except ValueError:
        return False
    global _bound
    _bound = True
    _ask_kernel_for_sigterm_on_parent_death()
    if os.getppid() != parent:  # it died before the kernel was asked: nobody will signal us
        os._exit(EXIT_ORPHANED)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_watch_parent, args=(parent,), name="relay-lifeline", daemon=True
    ).start()
    return True


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way out mistakes it for an error and carries on."""

    def __init__(self, signo: int) -> None:
        super().__init__(signo)
        self.signo = signo

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signo).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signo


_interrupted = False  # once set, this process is on its way out: later signals wait


def _interrupt(signo: int, _frame: object) -> None:
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    raise Interrupted(signo)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM the process receives raises `Interrupted` in the
    main thread; any later one is ignored, so it cannot cut the clean-up short."""

    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def run_command(prog: str, command: Callable[[], int]) -> int:
    """Run a whole command, `command()`, inside `stop_on_signals()` from its first line: a
    signal it does not catch itself ends it with 128 + the signal's number and the line
    `PROG: stopped by SIGNAL` (none from a managed process: its parent reports for it)."""
    with stop_on_signals():
        try:
            return command()
        except Interrupted as stop:
            if not managed():
                print(f"{prog}: stopped by {stop.signal_name}", file=sys.stderr, flush=True)
            return stop.exit_status
