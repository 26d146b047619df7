"""A receiver's copies of a burst as one message of several segments (UDP GSO).

Packets of one stream that arrive one after another in a receive batch are fanned out
receiver by receiver (ext/forward.pxi), and the SendBatch groups each receiver's consecutive
copies of equal size into one message the kernel splits (ext/batch.pxi). Without sockets the
messages are read back with SendBatch.messages(); on real sockets every receiver must still
get every packet, once, in order.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay import _core, wire
from tests.conftest import rtp
from tests.test_forward import AES, HOST_SSRC, Peer, Relay, webinar
from tests.test_worker import (
    MEETING,
    ROOT,
    TIMEOUT,
    Party,
    free_port_pair,
)

GSO_SEGMENT_MAX = 1452  # ext/consts.pxi


def burst(host: Peer, first: int, sizes: list[int]) -> tuple[list[bytes], list[bytes]]:
    """(plaintexts, SRTP packets) of consecutive packets of the host's stream, of these
    sizes (RTP bytes before SRTP)."""
    plains, packets = [], []
    for k, size in enumerate(sizes):
        seq = first + k
        payload = seq.to_bytes(4, "big") * (size // 4)
        plain = rtp(seq, ssrc=HOST_SSRC, payload=payload[: size - 12], ts=seq * 3000)
        plains.append(plain)
        packets.append(host.out.protect(plain))
    return plains, packets


def forward(relay: Relay, host: Peer, packets: list[bytes]) -> _core.SendBatch:
    """One receive batch of `packets` from the host, forwarded into relay.tx (not cleared)."""
    rx = _core.RecvBatch()
    for packet in packets:
        rx.push(packet, host.address)
    relay.forwarder.process(rx, relay.tx, relay.now)
    return relay.tx


def test_each_receivers_copies_of_a_burst_are_one_message() -> None:
    relay, host, attendees = webinar(AES, attendees=3)
    plains, packets = burst(host, 1, [1200] * 10)
    tx = forward(relay, host, packets)
    protected = len(packets[0])  # every copy: the same size as the host's packet here
    assert tx.messages() == [(10, protected, a.address) for a in attendees]
    got = {a.address: [] for a in attendees}
    for data, address in tx.items():
        got[address].append(data)
    for a in attendees:
        assert [a.inp.unprotect(d) for d in got[a.address]] == plains  # in order, once


def test_a_shorter_last_packet_ends_the_message_and_a_larger_one_starts_another() -> None:
    relay, host, attendees = webinar(AES, attendees=2)
    # 4 full, 1 shorter (a frame's last packet): one message; then 2 full, 1 larger.
    _, packets = burst(host, 1, [1000] * 4 + [300] + [1000] * 2 + [1100])
    tx = forward(relay, host, packets)
    full, short, large = len(packets[0]), len(packets[4]), len(packets[7])
    expected = []
    for a in attendees:
        expected += [(5, full, a.address), (2, full, a.address), (1, large, a.address)]
    assert tx.messages() == expected
    assert short < full


def test_packets_of_two_streams_group_only_where_they_come_one_after_another() -> None:
    relay = Relay(AES, "meeting")
    a = relay.join(1, "host", [0xA0])
    b = relay.join(2, "panelist", [0xB0])
    c = relay.join(3, "panelist", [0xC0])
    rx = _core.RecvBatch()
    # a a b a: a's first two are a burst; then b's one, then a's one.
    for sender, seq in ((a, 1), (a, 2), (b, 1), (a, 3)):
        rx.push(sender.media(seq)[1], sender.address)
    relay.forwarder.process(rx, relay.tx, relay.now)
    shapes = [(segments, address) for segments, _, address in relay.tx.messages()]
    assert shapes == [
        (2, b.address),
        (2, c.address),
        (1, a.address),
        (1, c.address),
        (1, b.address),
        (1, c.address),
    ]


def test_without_gso_every_copy_is_a_message_of_its_own() -> None:
    relay, host, attendees = webinar(AES, attendees=3)
    relay.tx.gso = False
    _, packets = burst(host, 1, [1200] * 5)
    tx = forward(relay, host, packets)
    assert len(tx.messages()) == 15
    assert all(segments == 1 for segments, _, _ in tx.messages())


def test_copies_larger_than_an_mtu_carries_are_not_grouped() -> None:
    """A segment must fit the path's MTU with its headers (the kernel refuses it otherwise):
    nothing above GSO_SEGMENT_MAX is grouped."""
    relay, host, _ = webinar(AES, attendees=1)
    _, packets = burst(host, 1, [GSO_SEGMENT_MAX + 20] * 3)
    assert len(packets[0]) > GSO_SEGMENT_MAX
    tx = forward(relay, host, packets)
    assert [segments for segments, _, _ in tx.messages()] == [1, 1, 1]


def test_an_ejected_receiver_gets_nothing_of_a_burst_and_each_copy_counts() -> None:
    relay, host, attendees = webinar(AES, attendees=2)
    relay.table.eject(attendees[0].pid)
    _, packets = burst(host, 1, [800] * 6)
    before = relay.drops()["ejected"]
    tx = forward(relay, host, packets)
    assert tx.messages() == [(6, len(packets[0]), attendees[1].address)]
    assert relay.drops()["ejected"] - before == 6


def start_worker(
    tmp: Path, port: int, snapshot: wire.Snapshot, *extra: str
) -> subprocess.Popen[str]:
    table = tmp / "table.json"
    wire.save_snapshot(snapshot, table)
    ready = tmp / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--media-port", str(port), "--table", str(table)]
        + ["--ready-file", str(ready), "--duration", "60", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    while not ready.exists() or not ready.read_text():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "worker did not become ready"
        time.sleep(0.02)
    return process


@pytest.mark.parametrize("extra", [(), ("--connected-sockets", "0"), ("--no-gso",)])
def test_a_worker_sends_every_packet_of_frames_to_every_receiver_in_order(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    """Frames of 20 video-sized packets sent back to back reach the worker in batches; each
    attendee gets every packet once, in order, as a datagram of its own (the kernel split
    the messages), from the media port; with GSO on, the worker says it grouped them."""
    host = Party(1, "host")
    attendees = [Party(10 + i, "attendee") for i in range(3)]
    for a in attendees:
        a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    port = free_port_pair()
    participants = [host.joined(address=False, ssrcs=(HOST_SSRC,))]
    participants += [a.joined(address=True) for a in attendees]
    snapshot = wire.Snapshot(1, (wire.MeetingOpened(MEETING, "webinar"),), tuple(participants))
    process = start_worker(tmp_path, port, snapshot, *extra)
    try:
        sent = []
        for frame in range(10):
            packets = []
            for k in range(20):
                seq = frame * 20 + k + 1
                size = 1200 if k < 19 else 400  # a frame's last packet is shorter
                plain = rtp(seq, ssrc=HOST_SSRC, payload=bytes([k]) * (size - 12), ts=frame)
                sent.append(plain)
                packets.append(host.out.protect(plain))
            for packet in packets:  # back to back: one or a few receive batches
                host.sock.sendto(packet, ("127.0.0.1", port))
            time.sleep(0.02)
        for a in attendees:
            got = []
            for _ in sent:
                data, source = a.sock.recvfrom(4096)
                assert source == ("127.0.0.1", port)
                got.append(a.inp.unprotect(data))
            assert got == sent
            assert a.drain(0.1) == []
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
        counters = json.loads(out.strip().splitlines()[-1])
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for party in (host, *attendees):
            party.sock.close()
    assert counters["packets_out"] == 3 * len(sent)
    assert set(counters["dropped"].values()) == {0}
    assert counters["gso"]["refused"] == 0
    if "--no-gso" in extra:
        assert counters["gso"]["segments"] == 0
    else:
        assert counters["gso"]["segments"] > len(sent)  # grouped, for most of the copies
