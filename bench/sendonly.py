"""`relay bench --path send-only`: measure only the send half of every copy.

On loopback (the default path) the kernel's receive half of every copy the relay sends (the
sinks' socket lookup, queueing, recvmmsg) runs on the same cores as the relay and counts in
what it can do; on a host with a NIC only the send half runs on the relay's core. This path
takes the receive half away:

- The bench makes a network namespace of its own, `relaybench-<pid>`, with `lo` up and one
  `ifb` device, `rbench0`, at RELAY_HOST/13 (10.200.0.0/13, a private range nothing else here
  uses). An ifb device with nothing redirected to it frees each packet it is given to transmit
  and counts it in its RX "dropped" counter (stats64.rx.dropped of `ip -j -s link show`): the
  count of copies that left the relay's host stack, at no receive cost.
- Every relay under test runs inside it (`ip netns exec`), bound to RELAY_HOST: a socket bound
  to 127.0.0.1 cannot send out of another device.
- The load generator's socket is made inside it too (a socket belongs to the namespace of the
  thread that made it: `inside()` moves the calling thread in and back, setns(2)), so the
  presenter, at its loopback address (127.1.0.1), reaches the relay over `lo`.
- Receivers are at `receiver_address(i)`: 10.201.0.0 and up, in the device's subnet, so every
  copy is routed to the device. Nothing receives them: latency cannot be measured here, and
  the report says so (None) rather than give a made-up figure.
- A message of several segments (UDP GSO) is split in software before the device
  (`gso_max_segs 1`), on the relay's core, as for a NIC without segmentation offload, and
  each segment counts as a copy.
- `Capture` verifies a sample of what went out, taken at the device (an AF_PACKET socket sees
  transmitted packets) by a classic BPF filter on the RTP sequence number.

The namespace goes at the end whatever ends the run (an error, Ctrl-C, SIGTERM: the `with`
block's exit, relay/lifecycle.py); one left by a bench killed outright (SIGKILL) is removed by
the next send-only run, as its pid is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PATH = "send-only"
NETNS_PREFIX = "relaybench-"
DEVICE = "rbench0"
RELAY_HOST = "10.200.0.1"  # the relay's address, on the device
PREFIX_LEN = 13  # 10.200.0.0/13: 10.200.0.0 to 10.207.255.255
RECEIVER_BASE = (10 << 24) | (201 << 16)  # receiver i at 10.201.0.0 + i
MAX_RECEIVERS = (7 << 16) - 1  # up to 10.207.255.254 (.255.255 is the broadcast address)
TXQUEUELEN = 10_000  # the device's queue: deep enough that it never drops (checked per step)
CLONE_NEWNET = 0x40000000  # <sched.h>
REFUSED = (
    "relay bench: --path send-only needs root: it creates a network namespace with an ifb device"
)


class Refused(Exception):
    """This host cannot run the send-only path (not root, no `ip`, no ifb): exit status 2."""


def refusal() -> str | None:
    """Why this process cannot run the send-only path, as one line; None if it can."""
    if os.geteuid() != 0:
        return REFUSED
    if shutil.which("ip") is None:
        return "relay bench: --path send-only needs the `ip` command (iproute2)"
    return None


def receiver_address(index: int) -> str:
    """The address of participant `index` (a receiver, index >= 1) on the device's subnet."""
    if not 0 < index <= MAX_RECEIVERS:
        raise ValueError(f"the send-only path has room for {MAX_RECEIVERS} receivers")
    return socket.inet_ntoa(struct.pack("!I", RECEIVER_BASE + index))


def receiver_index(address: bytes) -> int:
    """The inverse of receiver_address, from 4 bytes in network order; -1 if none."""
    index = struct.unpack("!I", address)[0] - RECEIVER_BASE
    return index if 0 < index <= MAX_RECEIVERS else -1


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def remove_stale() -> list[str]:
    """Remove the namespaces of send-only benches that are no longer running (killed
    outright, so no clean-up ran); returns their names."""
    removed = []
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        pid = name.removeprefix(NETNS_PREFIX)
        if not name.startswith(NETNS_PREFIX) or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        with contextlib.suppress(RuntimeError):
            _ip("netns", "delete", name)
            removed.append(name)
    return removed


class Namespace:
    """The bench's network namespace with the ifb device: a context manager that makes it and
    removes it, whatever ends the `with` block."""

    def __init__(self) -> None:
        self.name = f"{NETNS_PREFIX}{os.getpid()}"
        self.device = DEVICE
        self.host = RELAY_HOST
        self._made = False

    def __enter__(self) -> Namespace:
        problem = refusal()
        if problem:
            raise Refused(problem)
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self) -> None:
        remove_stale()
        self._made = True  # first: a signal that ends `ip netns add` may come after it made it
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        try:
            _ip("-n", self.name, "link", "add", self.device, "type", "ifb")
        except RuntimeError as exc:
            raise Refused(
                f"relay bench: --path send-only needs the ifb device (modprobe ifb): {exc}"
            ) from None
        # No IPv6 link-local address: its router and multicast chatter would count as copies.
        _ip("-n", self.name, "link", "set", self.device, "addrgenmode", "none")
        _ip("-n", self.name, "link", "set", self.device, "txqueuelen", str(TXQUEUELEN))
        # A message of several segments (UDP GSO, ext/batch.pxi) is split by the kernel before
        # the device, on the sender's core, as for a NIC without UDP segmentation offload:
        # the device then counts each segment (as one skb it would count once), and the
        # relay pays the split. A NIC that segments in hardware would cost it less.
        _ip("-n", self.name, "link", "set", self.device, "gso_max_segs", "1")
        _ip("-n", self.name, "addr", "add", f"{self.host}/{PREFIX_LEN}", "dev", self.device)
        _ip("-n", self.name, "link", "set", self.device, "up")

    def close(self) -> None:
        if self._made:
            self._made = False
            # The relays in it have been stopped; one still running would keep the namespace
            # alive only until it exits (this removes its name, so nothing else enters it).
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)

    def wrap(self, command: Sequence[str]) -> list[str]:
        """`command` run inside the namespace. `ip netns exec` execs it (no fork), so the pid
        Popen returns is the command's own: its CPU time is read from /proc as on loopback."""
        return ["ip", "netns", "exec", self.name, *command]

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """The calling thread inside the namespace for the block (setns is per thread; Python
        3.11 has no os.setns): sockets made in it belong to the namespace."""
        libc = ctypes.CDLL(None, use_errno=True)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(target, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {self.name}: {os.strerror(err)}")
            finally:
                os.close(target)
            try:
                yield
            finally:
                if libc.setns(home, CLONE_NEWNET) != 0:  # never stay: later sockets are ours
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns back: {os.strerror(err)}")
        finally:
            os.close(home)

    def device_packets(self) -> int:
        """Packets the device was given to send so far (its RX dropped counter, see above)."""
        stats = json.loads(_ip("-n", self.name, "-j", "-s", "link", "show", self.device))
        return int(stats[0]["stats64"]["rx"]["dropped"])

    def queue_drops(self) -> int:
        """Packets the device's queueing discipline dropped so far (they never reached it)."""
        done = subprocess.run(
            ["tc", "-n", self.name, "-j", "-s", "qdisc", "show", "dev", self.device],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            return 0  # no tc: the step's loss shows them anyway
        return sum(int(q.get("drops", 0)) for q in json.loads(done.stdout or "[]"))


# --- verifying a sample of what went out -------------------------------------------------------

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SAMPLES = 2000  # about this many copies a verification step keeps


def sample_mask(copies: int) -> int:
    """The sequence-number mask a step of `copies` copies samples with (seq & mask == 0): a
    power of two minus one, so that about SAMPLES copies pass (all of them in a short step)."""
    if copies <= SAMPLES:
        return 0
    return (1 << min(16, int(math.log2(copies / SAMPLES)))) - 1


def _filter(mask: int) -> bytes:
    """Classic BPF over the IP header (a SOCK_DGRAM packet socket's filter sees a transmitted
    packet from its network header): IPv4, UDP, not a later fragment, and RTP sequence number
    & mask == 0. It runs for every copy (on the relay's core: the kernel hands each
    transmitted packet to the socket in the sender's context); the few it passes are kept."""
    ld_b_abs, ld_h_abs, ldx_msh, ld_h_ind = 0x30, 0x28, 0xB1, 0x48
    and_k, jeq_k, jset_k, ret_k = 0x54, 0x15, 0x45, 0x06
    program = [
        (ld_b_abs, 0, 0, 0),  # A = IP version and header length
        (and_k, 0, 0, 0xF0),
        (jeq_k, 0, 9, 0x40),  # IPv4, else drop (jumps count from the next instruction)
        (ld_b_abs, 0, 0, 9),  # A = protocol
        (jeq_k, 0, 7, 17),  # UDP, else drop
        (ld_h_abs, 0, 0, 6),  # A = flags and fragment offset
        (jset_k, 5, 0, 0x1FFF),  # a later fragment: drop
        (ldx_msh, 0, 0, 0),  # X = IP header length
        (ld_h_ind, 0, 0, 8 + 2),  # A = RTP sequence number (after the 8-byte UDP header)
        (and_k, 0, 0, mask),
        (jeq_k, 0, 1, 0),  # seq & mask == 0: keep
        (ret_k, 0, 0, 0xFFFF),
        (ret_k, 0, 0, 0),
    ]
    return b"".join(struct.pack("HBBI", *insn) for insn in program)


class Capture:
    """Copies the device transmits whose RTP sequence number & mask is 0, while it is open.
    Make it inside the namespace (Namespace.inside): a packet socket binds a device of the
    namespace it belongs to."""

    def __init__(self, device: str, mask: int) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            code = _filter(mask)
            buf = ctypes.create_string_buffer(code)
            prog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
            self.sock.bind((device, ETH_P_ALL))  # Python puts it in network order here
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def take(self, limit: int = 4 * SAMPLES) -> list[tuple[int, bytes]]:
        """[(receiver index, the SRTP packet)] captured so far (at most `limit`); closes."""
        out: list[tuple[int, bytes]] = []
        try:
            while len(out) < limit:
                try:
                    packet = self.sock.recv(4096)
                except BlockingIOError:
                    break
                ihl = (packet[0] & 0x0F) * 4
                who = receiver_index(packet[16:20])
                if who >= 0 and len(packet) >= ihl + 8:
                    out.append((who, packet[ihl + 8 :]))
        finally:
            self.sock.close()
        return out


def counters_check(counters: dict[str, Any], device: int) -> dict[str, Any]:
    """The relay's own count of copies sent (its stats line at stop) beside what the device
    counted over the relay's whole life: they agree unless packets were lost between."""
    sent = counters.get("packets_out")
    return {
        "device_packets": device,
        "relay_packets_out": sent,
        "agree": None if not isinstance(sent, int) else sent == device,
    }
