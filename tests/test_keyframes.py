"""Keyframe requests merged (ext/forward.pxi, "Keyframe requests"): whoever asks and wherever
they are homed, a stream's sender gets at most one per keyframe_interval, and one more when an
interval with merged requests ends; a receiver's first packet of a video stream asks one. In
memory, through relay._core's tables and forwarders: one worker, and two passing records
(ext/fanout.pxi)."""

from __future__ import annotations

import struct

import pytest

from relay import _core
from tests.test_fanout import Worker
from tests.test_forward import AES, GCM, MID, Datagram, Peer, Relay, key_material, rtcp_pli

VIDEO, AUDIO = 0x0B0B0B0B, 0x0A0A0A0A


def due(relay: Relay, now: float) -> list[Datagram]:
    relay.forwarder.process_keyframes_due(relay.tx, now)
    out = relay.tx.items()
    relay.tx.clear()
    return out


def requests_to(host: Peer, items: list[Datagram]) -> list[bytes]:
    """The keyframe requests among what went out: the host's RTCP, decrypted."""
    session = host.fresh_receiver()
    found = []
    for data, address in items:
        if address == host.address and 192 <= data[1] <= 223:
            plain = session.unprotect_rtcp(data)
            if plain[1] == 206:
                found.append(plain)
    return found


def test_a_thousand_receivers_asking_become_two_requests_a_second() -> None:
    relay = Relay(AES, "webinar")
    host = relay.join(1, "host", [VIDEO])
    table = relay.table
    viewers = [relay.join(100 + i, "attendee") for i in range(1000)]
    t0 = relay.now
    requests: list[bytes] = []
    # For three seconds every viewer asks once a second (a lossy network's decoders), spread
    # over the second; the relay's own follow-ups run every 50 ms, as the worker's loop does.
    for tick in range(60):
        now = t0 + tick * 0.05
        asking = viewers[(tick % 20) * 50 : (tick % 20 + 1) * 50]
        batch = [(v.out.protect_rtcp(rtcp_pli(v.pid, VIDEO)), v.address) for v in asking]
        requests += requests_to(host, relay.feed(batch, now))
        requests += requests_to(host, due(relay, now))
    assert 5 <= len(requests) <= 6  # 3 s at one per 0.5 s, the first at once: 2 a second
    # Every viewer's request was passed on or merged; the rest are the relay's follow-ups.
    passed = [r for r in requests if struct.unpack_from("!I", r, 4)[0] != 0]
    assert table.counters()["dropped"]["rate_limited"] == 3000 - len(passed)


@pytest.mark.parametrize("suite", [AES, GCM])
def test_a_receivers_first_video_packet_asks_a_keyframe_and_audio_does_not(suite: str) -> None:
    relay = Relay(suite, "webinar")
    host = relay.join(1, "host", [AUDIO, VIDEO])
    relay.table.leave(1)  # joined again with its streams' kinds, as routes.py joins them
    relay.table.join(
        1, MID, "host", suite, host.uplink, host.downlink, ssrcs=[AUDIO, VIDEO],
        address=host.address, video_ssrcs=[VIDEO],
    )  # fmt: skip
    viewer = relay.join(10, "attendee")
    audio = relay.send(host, host.media(1, AUDIO)[1])
    assert requests_to(host, audio) == []
    video = relay.send(host, host.media(1, VIDEO)[1])
    assert [p[8:12] for p in requests_to(host, video)] == [VIDEO.to_bytes(4, "big")]
    assert [a for _, a in video if a == viewer.address]  # and the packet went out
    # Another newcomer within the interval: merged, then the follow-up.
    relay.join(11, "attendee")
    assert requests_to(host, relay.send(host, host.media(2, VIDEO)[1])) == []
    assert len(requests_to(host, due(relay, relay.now + 0.5))) == 1


def test_a_request_for_a_sender_homed_elsewhere_goes_there_and_is_merged_there() -> None:
    """Worker 0 is the host's home; viewers are homed on both. Only worker 0 may protect RTCP
    for the host (its SRTCP index is worker 0's), so worker 1 passes its viewers' requests
    there as records."""
    workers = [Worker(), Worker()]
    host = Peer(1, AES, key_material(AES), key_material(AES), ("10.0.0.1", 5000), (VIDEO,))
    viewers = [
        Peer(10 + k, AES, key_material(AES), key_material(AES), (f"10.0.1.{k}", 6000), ())
        for k in range(4)
    ]
    home = {host.pid: 0, **{v.pid: k % 2 for k, v in enumerate(viewers)}}
    for index, w in enumerate(workers):
        for peer, role in [(host, "host"), *((v, "attendee") for v in viewers)]:
            w.table.join(
                peer.pid, MID, role, AES, peer.uplink, peer.downlink, ssrcs=peer.ssrcs,
                address=peer.address, local=home[peer.pid] == index,
            )  # fmt: skip
    far = [v for v in viewers if home[v.pid] == 1]
    near = [v for v in viewers if home[v.pid] == 0]
    # A far viewer asks: nothing goes out on worker 1; its record reaches worker 0.
    assert (
        workers[1].feed([(far[0].out.protect_rtcp(rtcp_pli(far[0].pid, VIDEO)), far[0].address)])
        == []
    )  # noqa: E501
    (exports,) = workers[1].forwarder.take_exports()
    assert exports[0] == MID
    assert requests_to(host, workers[0].take_in(exports[1])) == [rtcp_pli(far[0].pid, VIDEO)]
    # A near viewer asks within the interval: merged on worker 0 with the far one's.
    assert (
        workers[0].feed([(near[0].out.protect_rtcp(rtcp_pli(near[0].pid, VIDEO)), near[0].address)])
        == []
    )  # noqa: E501
    assert workers[0].table.counters()["dropped"]["rate_limited"] == 1
    # Worker 1 never protected anything for the host; its records carry no media to record.
    assert _core.records_to_pcap(exports[1], 0.0) == b""
