"""The AF_XDP path (ext/xdp.pxi, ext/xsk.c, relay/nexthop.py) on a veth pair between two
network namespaces this test makes: a worker in one with `--xdp`, a presenter and attendees in
the other, real UDP sockets there that decrypt every copy.

What arrives proves the frames right: the receiving kernel checks the IP header's and the UDP
checksum of every datagram (veth hands the peer the frame as it was written) and drops a bad
one, and a tap in the peers' namespace recomputes both. Where the checksum is offloaded
(`--xdp-checksum offload`), veth hands the frame over with it still to be filled in, as the
kernel's own sockets' datagrams: the tap checks the pseudo-header's sum it is seeded with, and
`--xdp-checksum kernel` has the kernel fill it in from that seed as a device would. The
worker's counters prove the path was taken. A receiver that moves loses its hop at
once: nothing more goes to where it was.

Needs root (namespaces; AF_XDP needs CAP_NET_RAW and CAP_NET_ADMIN), `ip` and a kernel with
AF_XDP: skipped without them, unless RELAY_REQUIRE_XDP=1 makes that a failure.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay import nexthop, wire
from tests.conftest import rtp
from tests.test_worker import (
    HOST_PID,
    HOST_SSRC,
    MEETING,
    ROOT,
    TIMEOUT,
    Party,
    host_packet,
)

CLONE_NEWNET = 0x40000000
AF_XDP = 44


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, AF_XDP)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    try:
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    except OSError as exc:
        return f"this kernel has no AF_XDP ({exc.strerror})"
    return None


if (why := _why_not()) is not None:
    if os.environ.get("RELAY_REQUIRE_XDP") == "1":
        raise RuntimeError(f"RELAY_REQUIRE_XDP=1, but the AF_XDP test cannot run: {why}")
    pytest.skip(why, allow_module_level=True)

_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def inside(netns: str) -> Iterator[None]:
    """This thread in network namespace `netns` (sockets made meanwhile stay in it)."""
    with open("/proc/self/ns/net") as home, open(f"/var/run/netns/{netns}") as there:
        if _libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Pair:
    """Namespace `relay` holds interface `link` at `relay_ip`; `peers` holds the other end at
    `peer_ip`."""

    relay: str
    peers: str
    link: str
    relay_ip: str
    peer_ip: str


@pytest.fixture(params=["ipv4", "ipv6"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    tag = f"{os.getpid() % 100000}{request.param[-1]}"
    p = Pair(f"rxdp-r{tag}", f"rxdp-p{tag}", f"xr{tag}", "10.203.0.1", "10.203.0.2")
    prefix = 24
    if request.param == "ipv6":
        p.relay_ip, p.peer_ip, prefix = "fd00:203::1", "fd00:203::2", 64
    ip("netns", "add", p.relay)
    try:
        ip("netns", "add", p.peers)
        ip(
            "link",
            "add",
            p.link,
            "netns",
            p.relay,
            "type",
            "veth",
            "peer",
            "xp" + tag,
            "netns",
            p.peers,
        )
        extra = ["nodad"] if request.param == "ipv6" else []
        ip("-n", p.relay, "addr", "add", f"{p.relay_ip}/{prefix}", "dev", p.link, *extra)
        ip("-n", p.peers, "addr", "add", f"{p.peer_ip}/{prefix}", "dev", "xp" + tag, *extra)
        for ns, dev in ((p.relay, p.link), (p.peers, "xp" + tag)):
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield p
    finally:
        subprocess.run(["ip", "netns", "del", p.peers], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", p.relay], capture_output=True, check=False)


def peer_socket(pair: Pair) -> socket.socket:
    family = socket.AF_INET6 if ":" in pair.peer_ip else socket.AF_INET
    with inside(pair.peers):
        sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((pair.peer_ip, 0))
    sock.settimeout(TIMEOUT)
    return sock


class XdpWebinar:
    """A host and three attendees in the peers' namespace; the worker in the relay's."""

    def __init__(self, pair: Pair, tmp: Path) -> None:
        self.pair = pair
        self.tmp = tmp
        self.port = 41000
        self.host = Party(HOST_PID, "host", sock=peer_socket(pair))
        self.attendees = [Party(10 + i, "attendee", sock=peer_socket(pair)) for i in range(3)]
        self.process: subprocess.Popen[str] | None = None
        self.log = ""  # the worker's log, once it stopped

    def start(self, *extra: str) -> None:
        participants = [self.host.joined(address=False, ssrcs=(HOST_SSRC,))]
        # The attendees declare an SSRC: a packet of theirs from an address the relay does not
        # know is found by it, and moves them (tests/test_connected.py does the same).
        participants += [a.joined(address=True, ssrcs=(0x7000 + a.pid,)) for a in self.attendees]
        snapshot = wire.Snapshot(1, (wire.MeetingOpened(MEETING, "webinar"),), tuple(participants))
        table = self.tmp / "table.json"
        wire.save_snapshot(snapshot, table)
        ready = self.tmp / "ready"
        command = ["ip", "netns", "exec", self.pair.relay, sys.executable, "-m", "cli", "worker"]
        command += ["--media-host", self.pair.relay_ip, "--media-port", str(self.port)]
        command += ["--table", str(table), "--ready-file", str(ready), "--duration", "60"]
        self.process = subprocess.Popen(
            [*command, *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 15
        while not ready.exists() or not ready.read_text():
            if self.process.poll() is not None:
                pytest.fail(f"worker exited: {self.process.communicate()}")
            assert time.monotonic() < deadline, "worker did not become ready"
            time.sleep(0.02)

    def stop(self) -> dict[str, Any]:
        assert self.process is not None
        self.process.terminate()
        out, err = self.process.communicate(timeout=TIMEOUT)
        assert self.process.returncode == 0, err
        self.log = err
        counters: dict[str, Any] = __import__("json").loads(out.strip().splitlines()[-1])
        return counters

    def send(self, seqs: range, receivers: list[Party]) -> None:
        """The host sends `seqs`; each of `receivers` decrypts every one, once, from the media
        port."""
        sent = []
        for seq in seqs:
            plain, packet = host_packet(self.host, seq)
            sent.append(plain)
            self.host.sock.sendto(packet, (self.pair.relay_ip, self.port))
            if seq % 20 == 0:
                time.sleep(0.002)
        for attendee in receivers:
            got = []
            for _ in sent:
                data, source = attendee.sock.recvfrom(4096)
                assert source[:2] == (self.pair.relay_ip, self.port)
                got.append(attendee.inp.unprotect(data))
            assert sorted(got) == sorted(sent)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=TIMEOUT)
        for party in (self.host, *self.attendees):
            party.sock.close()


@pytest.fixture
def webinar(pair: Pair, tmp_path: Path) -> Iterator[XdpWebinar]:
    w = XdpWebinar(pair, tmp_path)
    try:
        yield w
    finally:
        w.close()


def wait_for_hops(webinar: XdpWebinar) -> None:
    """Send until the worker has looked up its receivers' hops (its first copies went from the media
    socket, which made the kernel resolve the neighbour; the look-up runs once a second)."""
    deadline = time.monotonic() + 10
    seq = 1
    while True:
        webinar.send(range(seq, seq + 5), webinar.attendees)
        seq += 5
        with inside(webinar.pair.relay):
            hops = nexthop.NextHops(webinar.pair.link)
            known = hops.resolve(webinar.pair.peer_ip) is not None
            hops.close()
        if known:
            break
        assert time.monotonic() < deadline, "the kernel never resolved the peer's address"
    time.sleep(nexthop.REFRESH / 10 + 1.2)  # a look-up round after the neighbour is known
    webinar.send(range(seq, seq + 5), webinar.attendees)


def ones_complement(data: bytes) -> int:
    """RFC 1071's sum, folded and complemented, computed here independently of ext/xsk.c."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def check_frame(frame: bytes, pair: Pair, relay_port: int, partial: bool = False) -> bool:
    """Whether `frame` is a UDP datagram from the relay's media port; if so, its checksums
    must be right: the IPv4 header's (RFC 791), the UDP one over the pseudo-header (RFC 768;
    RFC 8200 section 8.1). A `partial` one (left for the device to compute) must hold the
    pseudo-header's sum, folded and not complemented, which the device's checksum from the
    UDP header on completes (the kernel's CHECKSUM_PARTIAL)."""
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800:
        ip, header = frame[14:], (frame[14] & 0xF) * 4
        if ip[9] != socket.IPPROTO_UDP or ip[12:16] != socket.inet_aton(pair.relay_ip):
            return False
        assert ones_complement(ip[:header]) == 0, "IPv4 header checksum"
        udp = ip[header : struct.unpack_from("!H", ip, 2)[0]]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp))
    elif ethertype == 0x86DD:
        ip = frame[14:]
        if ip[6] != socket.IPPROTO_UDP or ip[8:24] != socket.inet_pton(
            socket.AF_INET6, pair.relay_ip
        ):
            return False
        udp = ip[40 : 40 + struct.unpack_from("!H", ip, 4)[0]]
        pseudo = ip[8:40] + struct.pack("!IxxxB", len(udp), socket.IPPROTO_UDP)
    else:
        return False
    if struct.unpack_from("!H", udp)[0] != relay_port:
        return False
    assert struct.unpack_from("!H", udp, 6)[0] != 0, "a UDP checksum is there"
    if partial:
        seed = ~ones_complement(pseudo) & 0xFFFF
        assert struct.unpack_from("!H", udp, 6)[0] == seed, "the pseudo-header's sum"
        completed = ones_complement(udp) or 0xFFFF  # as the device computes it, over the seed
        udp = udp[:6] + struct.pack("!H", completed) + udp[8:]
    assert ones_complement(pseudo + udp) == 0, "UDP checksum"
    return True


# AF_XDP TX metadata, which lets a frame's UDP checksum be left to the device (ext/xsk.h):
# Linux 6.11 and later.
TX_METADATA = tuple(map(int, os.uname().release.split(".")[:2])) >= (6, 11)
SOL_PACKET = 263  # linux/socket.h
PACKET_AUXDATA = 8  # linux/if_packet.h: each frame's tpacket_auxdata as ancillary data
TP_STATUS_CSUMNOTREADY = 1 << 3  # its checksum is left for the device (CHECKSUM_PARTIAL)


def tap_frames(tap: socket.socket) -> Iterator[tuple[bytes, bool]]:
    """Each frame the tap sees until it sees none for its time-out, and whether its checksum
    was left for the device to compute."""
    while True:
        try:
            frame, ancillary, _flags, _address = tap.recvmsg(4096, 64)
        except TimeoutError:
            return
        status = [
            struct.unpack_from("I", data)[0]
            for level, kind, data in ancillary
            if (level, kind) == (SOL_PACKET, PACKET_AUXDATA)
        ]
        assert len(status) == 1, ancillary
        yield frame, bool(status[0] & TP_STATUS_CSUMNOTREADY)


@pytest.mark.parametrize(
    ("connected", "checksum"), [("0", "auto"), ("64", "kernel"), ("0", "relay")]
)
def test_copies_leave_as_frames_and_every_receiver_decrypts_them(
    webinar: XdpWebinar, connected: str, checksum: str
) -> None:
    """With connected sockets on too (ext/connected.pxi), a receiver's first copies go from a
    socket connected to it; once it has a hop, that socket is closed and its copies are
    frames: one way out per receiver. Whoever computes the UDP checksums (on veth, auto is
    the device: offload), they come out right. A kernel without AF_XDP TX metadata has the
    relay compute them for auto, and refuses kernel at start."""
    if checksum == "kernel" and not TX_METADATA:
        with pytest.raises(pytest.fail.Exception, match=r"TX metadata: Linux 6\.11 or later"):
            webinar.start("--xdp", webinar.pair.link, "--xdp-checksum", checksum)
        return
    webinar.start(
        *("--xdp", webinar.pair.link, "--xdp-checksum", checksum),
        *("--connected-sockets", connected),
    )
    wait_for_hops(webinar)
    with inside(webinar.pair.peers):
        tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    tap.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: every frame kept
    tap.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    tap.bind(("xp" + webinar.pair.link[2:], 0))
    tap.settimeout(0.5)
    webinar.send(range(1000, 1300), webinar.attendees)
    offloaded = checksum == "auto" and TX_METADATA
    checked = 0
    for frame, partial in tap_frames(tap):
        if check_frame(frame, webinar.pair, webinar.port, partial):
            assert partial == offloaded, "left for the device exactly where offloaded"
            checked += 1
    tap.close()
    assert checked == 3 * 300
    counters = webinar.stop()
    way = "offload" if offloaded else "relay" if checksum == "auto" else checksum
    assert f"UDP checksums: {way}" in webinar.log
    xdp = counters["xdp"]
    assert counters["xdp_on"]
    assert counters["xdp_routed"] == 4  # the attendees, and the host (it latched)
    assert xdp["frames"] >= 3 * 300, xdp  # every copy of the last 300 went as a frame
    assert xdp["ring_full"] == 0 and xdp["wakeup_errors"] == 0, xdp
    assert xdp["invalid"] == 0, xdp  # the kernel took every frame and its metadata
    assert set(counters["dropped"].values()) == {0}
    assert counters["packets_out"] == 3 * counters["packets_in"]
    assert counters["connected_sockets"] == 0  # closed as the hops came, if made
    if connected != "0":
        assert counters["connect"]["made"] >= 3


def test_a_receiver_that_moves_loses_its_hop_and_nothing_follows_it(webinar: XdpWebinar) -> None:
    webinar.start("--xdp", webinar.pair.link)
    wait_for_hops(webinar)
    mover = webinar.attendees[0]
    old = mover.sock
    mover.sock = peer_socket(webinar.pair)
    try:
        # An authenticated packet from the new socket moves it (ext/table.pxi, table_latch):
        # an attendee's media goes nowhere, but it shows where it is.
        media = mover.out.protect(rtp(1, ssrc=0x7000 + mover.pid))
        mover.sock.sendto(media, (webinar.pair.relay_ip, webinar.port))
        time.sleep(0.2)
        webinar.send(range(2000, 2100), webinar.attendees)
        old.settimeout(0.3)
        with pytest.raises(TimeoutError):
            old.recv(4096)  # nothing after the move went to where it was
        time.sleep(1.5)  # the next look-up round gives it a hop at its new address
        webinar.send(range(2100, 2200), webinar.attendees)
    finally:
        old.close()
    counters = webinar.stop()
    assert counters["xdp_routed"] == 4
    assert counters["latched"] == 2  # the host's first packet, the mover's
    assert counters["dropped"]["not_allowed"] == 1  # the mover's packet itself
    assert sum(counters["dropped"].values()) == 1


def test_a_queue_the_interface_lacks_is_a_clear_start_up_error(webinar: XdpWebinar) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"--xdp .*queue 7"):
        webinar.start("--xdp", webinar.pair.link, "--xdp-queue", "7")


def test_an_interface_that_is_not_there_is_a_clear_start_up_error(webinar: XdpWebinar) -> None:
    with pytest.raises(pytest.fail.Exception, match="no interface 'nosuch0' here"):
        webinar.start("--xdp", "nosuch0")


def test_who_computes_the_checksums_on_each_kind_of_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auto is the device, unless the kernel may not read its frames' TX metadata (virtio_net,
    relay/worker.py): then the relay; asking such a device for offload or kernel is a clear
    error."""
    from relay import worker

    drivers = {"veth0": None, "eth0": "mlx5_core", "ens3": "virtio_net"}
    monkeypatch.setattr(worker, "interface_driver", drivers.get)
    assert worker.xdp_checksum_for("veth0", "auto") == "offload"
    assert worker.xdp_checksum_for("eth0", "auto") == "offload"
    assert worker.xdp_checksum_for("eth0", "kernel") == "kernel"
    assert worker.xdp_checksum_for("eth0", "relay") == "relay"
    assert worker.xdp_checksum_for("ens3", "auto") == "relay"
    assert worker.xdp_checksum_for("ens3", "relay") == "relay"
    for asked in ("offload", "kernel"):
        with pytest.raises(ValueError, match=r"ens3's driver \(virtio_net\) sends AF_XDP"):
            worker.xdp_checksum_for("ens3", asked)


def test_a_virtual_device_has_no_driver_in_sysfs_and_a_missing_one_none() -> None:
    from relay.worker import interface_driver

    assert interface_driver("lo") is None
    assert interface_driver("nosuch0") is None


def test_hops_only_for_destinations_through_the_interface(pair: Pair) -> None:
    with inside(pair.relay):
        hops = nexthop.NextHops(pair.link)
        try:
            loopback = "::1" if ":" in pair.relay_ip else "127.0.0.1"
            assert hops.resolve(loopback) is None  # routed through lo
            assert hops.resolve(pair.relay_ip) is None  # local
            unreachable = "2001:db8::9" if ":" in pair.relay_ip else "192.0.2.9"
            assert hops.resolve(unreachable) is None  # no route at all
        finally:
            hops.close()


def test_the_c_ceilings_af_xdp_form_sends_frames_every_receiver_decrypts(
    pair: Pair, tmp_path: Path
) -> None:
    """bench/ceiling_relay.py --xdp (`relay bench`'s ceiling_xdp): the C ceiling's copies as
    frames through the same ext/xsk.c, each decrypted by its receiver, every one counted as a
    frame. The ceiling is IPv4 only (bench/ceiling_relay.h)."""
    if ":" in pair.relay_ip:
        pytest.skip("the C ceiling is IPv4 only")
    w = XdpWebinar(pair, tmp_path)
    try:
        participants = [w.host.joined(address=False, ssrcs=(HOST_SSRC,))]
        participants += [a.joined(address=True) for a in w.attendees]
        snapshot = wire.Snapshot(1, (wire.MeetingOpened(MEETING, "webinar"),), tuple(participants))
        table, ready = tmp_path / "table.json", tmp_path / "ready"
        wire.save_snapshot(snapshot, table)
        command = ["ip", "netns", "exec", pair.relay, sys.executable, "-m", "bench.ceiling_relay"]
        command += ["--table", str(table), "--host", pair.relay_ip, "--port", str(w.port)]
        command += ["--xdp", pair.link, "--ready-file", str(ready), "--duration", "60"]
        w.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 15
        while not ready.exists():
            if w.process.poll() is not None:
                pytest.fail(f"ceiling exited: {w.process.communicate()}")
            assert time.monotonic() < deadline, "the ceiling did not become ready"
            time.sleep(0.02)
        for attendee in w.attendees:  # what made the kernel resolve the neighbour: empty
            attendee.sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                while True:
                    assert attendee.sock.recv(4096) == b""
            attendee.sock.settimeout(TIMEOUT)
        w.send(range(1, 301), w.attendees)
        counters = w.stop()
        assert counters["xdp_routed"] == 3, counters
        assert counters["packets_in"] == 300
        assert counters["xdp_frames"] == counters["packets_out"] == 3 * 300, counters
        assert counters["xdp_fallbacks"] == 0 and counters["send_errors"] == 0, counters
    finally:
        w.close()
