"""Receiver reports put to use (ext/reports.pxi): what a receiver's RR says of a stream it
gets (fraction lost, jitter, and the round-trip time from the sender report the relay
forwarded it) reaches the counters' histograms, the worker's reception frame, the control
plane's participants list and /metrics. In memory, through relay._core's table and forwarder."""

from __future__ import annotations

import struct

from prometheus_client import CollectorRegistry, generate_latest

from control.metrics import ControlCounters, RelayCollector
from control.stats import StatsAggregator
from tests.test_forward import AES, Peer, Relay

VIDEO, AUDIO = 0x0B0B0B0B, 0x0A0A0A0A


def sender_report(ssrc: int, ntp: int) -> bytes:
    """An SR without report blocks (RFC 3550 section 6.4.1): NTP timestamp, RTP timestamp,
    packet and octet counts."""
    return struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, ntp, 90000, 10, 12000)


def receiver_report(
    reporter: int, about: int, fraction: int, jitter: int, lsr: int, dlsr: int
) -> bytes:  # noqa: E501
    block = struct.pack(
        "!IB3sIIII", about, fraction, (40).to_bytes(3, "big"), 1000, jitter, lsr, dlsr
    )
    return struct.pack("!BBHI", 0x81, 201, 7, reporter) + block


def scene() -> tuple[Relay, Peer, Peer]:
    relay = Relay(AES, "webinar")
    host = relay.join(1, "host", [AUDIO, VIDEO])
    relay.table.leave(1)
    relay.table.join(
        1, 1, "host", AES, host.uplink, host.downlink, ssrcs=[AUDIO, VIDEO],
        address=host.address, video_ssrcs=[VIDEO],
    )  # fmt: skip
    viewer = relay.join(10, "attendee")
    return relay, host, viewer


def test_a_receivers_report_gives_loss_jitter_and_the_round_trip_time() -> None:
    relay, host, viewer = scene()
    t0 = relay.now
    ntp = 0x83AA7E80_12345678
    forwarded = relay.feed([(host.out.protect_rtcp(sender_report(VIDEO, ntp)), host.address)], t0)
    assert [a for _, a in forwarded] == [viewer.address]
    lsr = (ntp >> 16) & 0xFFFFFFFF
    # 13/256 lost, jitter 900 ticks of 90 kHz (10 ms), its SR held 0.25 s: RTT 0.05 s.
    report = receiver_report(0x5EED, VIDEO, 13, 900, lsr, 16384)
    relay.feed([(viewer.out.protect_rtcp(report), viewer.address)], t0 + 0.3)
    (record,) = struct.iter_unpack("<IIIB3x", relay.table.take_reception())
    identity, jitter_us, rtt_us, fraction = record
    assert (identity, fraction, jitter_us) == (10, 13, 10000)
    assert rtt_us == 50000
    assert relay.table.take_reception() == b""  # reported once, until the next report
    counters = relay.table.counters()
    assert counters["rr_rtt"]["0.05"] == 1 and sum(counters["rr_rtt"].values()) == 1
    assert counters["rr_jitter"]["0.01"] == 1
    assert counters["rr_loss"]["0.1"] == 1  # 13/256 = 0.051
    # Audio's jitter is in 48 kHz ticks; an SR the relay never forwarded gives no RTT.
    audio = receiver_report(0x5EED, AUDIO, 0, 480, 0xDEAD, 0)
    relay.feed([(viewer.out.protect_rtcp(audio), viewer.address)], t0 + 0.4)
    (record,) = struct.iter_unpack("<IIIB3x", relay.table.take_reception())
    assert record[1] == 10000 and record[2] == 50000  # the earlier RTT stands
    assert sum(relay.table.counters()["rr_rtt"].values()) == 1


def test_the_control_plane_shows_it_per_participant_and_as_histograms() -> None:
    relay, host, viewer = scene()
    ntp = 0x83AA7E80_00010000
    relay.feed([(host.out.protect_rtcp(sender_report(VIDEO, ntp)), host.address)], 1000.0)
    report = receiver_report(0x5EED, VIDEO, 64, 1800, (ntp >> 16) & 0xFFFFFFFF, 0)
    relay.feed([(viewer.out.protect_rtcp(report), viewer.address)], 1000.02)
    stats = StatsAggregator()
    message = {"worker": 0, "counters": relay.table.counters()}
    stats.receive(
        message, 1.0, None, relay.table.participant_counters_blob(), relay.table.take_reception()
    )
    assert stats.reception[10] == {"loss": 0.25, "jitter_ms": 20.0, "rtt_ms": 20.0}
    registry = CollectorRegistry()
    registry.register(RelayCollector(stats, ControlCounters(), lambda: (1, 2)))
    text = generate_latest(registry).decode()
    assert 'relay_receiver_rtt_seconds_bucket{le="0.02"} 1.0' in text
    assert 'relay_receiver_rtt_seconds_bucket{le="+Inf"} 1.0' in text
    assert "relay_receiver_rtt_seconds_sum 0.02" in text
    assert 'relay_receiver_loss_ratio_bucket{le="0.2"} 0.0' in text
    assert 'relay_receiver_loss_ratio_bucket{le="0.5"} 1.0' in text
    # It leaves that worker's table: its reception is forgotten.
    relay.table.leave(10)
    stats.receive(message, 2.0, None, relay.table.participant_counters_blob())
    assert 10 not in stats.reception
