"""Worker reports added up across workers and restarts, and the /metrics text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from control.metrics import ControlCounters, RelayCollector
from control.stats import StatsAggregator


def report(
    worker: int, packets_in: int, dropped_auth: int = 0, people: dict[str, list[int]] | None = None
) -> dict[str, object]:
    return {
        "worker": worker,
        "time": 0.0,
        "counters": {
            "packets_in": packets_in,
            "bytes_in": packets_in * 100,
            "packets_out": packets_in * 3,
            "bytes_out": packets_in * 300,
            "dropped": {"auth": dropped_auth, "replay": 0},
            "gso": {"segments": packets_in * 2, "refused": 0},
            "connect": {"made": 1, "failed": 0, "over_limit": 0},
            # ext/delay.pxi: counts per bucket; the metric makes them cumulative
            "forward_delay": {"0.001": packets_in, "0.002": 1, "+Inf": 0},
            "forward_sums": {"delay_us": packets_in * 500 + 1500},
        },
        "participants": people or {},
    }


def test_totals_across_workers_and_a_restart() -> None:
    agg = StatsAggregator()
    agg.receive(report(0, 10, 1, {"7": [10, 1000, 0, 0]}), now=1)
    agg.receive(report(1, 5), now=1)
    agg.receive(report(0, 30, 2, {"7": [30, 3000, 0, 0]}), now=2)  # cumulative: replaces 10
    assert agg.total("packets_in") == 35
    assert agg.participant("7") == (30, 3000, 0, 0)
    agg.receive(report(0, 4, 0, {"7": [4, 400, 0, 0]}), now=3)  # worker 0 restarted
    assert agg.restarts() == 1
    assert agg.total("packets_in") == 30 + 4 + 5
    assert agg.drops() == {"auth": 2, "replay": 0}
    assert agg.participant("7") == (34, 3400, 0, 0)


def test_a_bad_report_changes_nothing() -> None:
    agg = StatsAggregator()
    agg.receive(report(0, 10), now=1)
    for bad in (
        {"counters": {}},
        {"worker": "x", "counters": {}},
        {"worker": 0, "counters": {"packets_in": "many"}},
    ):
        with pytest.raises(ValueError):
            agg.receive(bad, now=2)
    assert agg.total("packets_in") == 10


def test_webrtc_peers_reported_gone_are_taken_once_per_report() -> None:
    agg = StatsAggregator()
    ended = [
        {"kind": "webrtc_ended", "participant": 5, "reason": "closed"},
        {"kind": "latched", "participant": 6},
    ]
    agg.receive({**report(0, 1), "events": ended}, now=1)
    assert agg.take_ended() == {5: "closed"} and agg.take_ended() == {}
    agg.receive({**report(0, 2), "events": ended[:1]}, now=2)  # reported again: taken again
    assert agg.take_ended() == {5: "closed"}
    with pytest.raises(ValueError):  # an event without its participant changes nothing
        agg.receive({**report(0, 3), "events": [{"kind": "webrtc_ended", "reason": "x"}]}, now=3)
    assert agg.take_ended() == {} and agg.total("packets_in") == 2


def test_metrics_text() -> None:
    agg = StatsAggregator()
    agg.receive(report(0, 10, 3), now=1)
    control = ControlCounters()
    control.joins = 4
    control.join_failed("wrong_password")
    registry = CollectorRegistry()
    registry.register(RelayCollector(agg, control, lambda: (2, 9)))
    text = generate_latest(registry).decode()
    for line in (
        "relay_packets_in_total 10.0",
        "relay_packets_out_total 30.0",
        "relay_bytes_in_total 1000.0",
        'relay_packets_dropped_total{reason="auth"} 3.0',
        "relay_meetings 2.0",
        "relay_participants 9.0",
        "relay_joins_total 4.0",
        'relay_join_failures_total{reason="wrong_password"} 1.0',
        "relay_worker_restarts_total 0.0",
        'relay_gso_total{outcome="segments"} 20.0',
        'relay_gso_total{outcome="refused"} 0.0',
        'relay_connected_sockets_total{outcome="made"} 1.0',
        'relay_forward_delay_seconds_bucket{le="0.001"} 10.0',
        'relay_forward_delay_seconds_bucket{le="0.002"} 11.0',
        'relay_forward_delay_seconds_bucket{le="+Inf"} 11.0',
        "relay_forward_delay_seconds_sum 0.0065",
    ):
        assert line in text, line
    assert "participant" not in text.replace("relay_participants", "")


def test_metrics_per_worker_across_a_restart_and_a_silent_worker() -> None:
    """The relay_worker_* families: each worker's own totals, drops of every reason added,
    a restart's counts kept, and up only while its reports keep coming."""
    agg = StatsAggregator()
    agg.receive(report(0, 10, 3), now=100.0)
    agg.receive(report(0, 2, 1), now=101.0)  # worker 0 restarted: 10 + 2 in, 3 + 1 dropped

    def worker_1(packets_in: int) -> dict[str, object]:
        """Worker 1's report, with drops of three reasons."""
        message = report(1, packets_in)
        counters = message["counters"]
        assert isinstance(counters, dict)
        counters["dropped"] = {"auth": 2, "replay": 5, "not_allowed": 1}
        return message

    agg.receive(worker_1(7), now=98.5)
    registry = CollectorRegistry()
    clock = [101.5]
    registry.register(RelayCollector(agg, ControlCounters(), lambda: (0, 0), lambda: clock[0]))
    text = generate_latest(registry).decode()
    for line in (
        'relay_worker_packets_in_total{worker="0"} 12.0',
        'relay_worker_packets_in_total{worker="1"} 7.0',
        'relay_worker_packets_out_total{worker="0"} 36.0',
        'relay_worker_packets_out_total{worker="1"} 21.0',
        'relay_worker_bytes_in_total{worker="0"} 1200.0',
        'relay_worker_bytes_in_total{worker="1"} 700.0',
        'relay_worker_bytes_out_total{worker="0"} 3600.0',
        'relay_worker_bytes_out_total{worker="1"} 2100.0',
        'relay_worker_packets_dropped_total{worker="0"} 4.0',
        'relay_worker_packets_dropped_total{worker="1"} 8.0',
        'relay_worker_up{worker="0"} 1.0',
        'relay_worker_up{worker="1"} 0.0',  # its last report is 3 s old
        # The node's totals are the workers' added up, as before.
        "relay_packets_in_total 19.0",
        'relay_packets_dropped_total{reason="auth"} 6.0',
        "relay_worker_restarts_total 1.0",
    ):
        assert line in text, line
    clock[0] = 104.0  # worker 0 silent for 3 s too
    assert 'relay_worker_up{worker="0"} 0.0' in generate_latest(registry).decode()
    agg.receive(worker_1(8), now=104.0)  # worker 1 reports again
    text = generate_latest(registry).decode()
    assert 'relay_worker_up{worker="1"} 1.0' in text
    assert 'relay_worker_packets_in_total{worker="1"} 8.0' in text


def test_participants_in_the_binary_frame_of_a_worker_table() -> None:
    """The per-participant counters as a worker sends them (docs/wire.md): a frame of the
    table's own records, added up across a restart like the JSON ones."""
    import struct

    from relay import _core

    table = _core.RouteTable()
    table.open_meeting(1, "meeting")
    for pid in (9, 3, 700):
        table.join(pid, 1, "panelist", "AES_CM_128_HMAC_SHA1_80", bytes(30), bytes(30))
    blob = table.participant_counters_blob()
    assert len(blob) == 3 * 40
    assert sorted(struct.unpack_from("<I", blob, k * 40)[0] for k in range(3)) == [3, 9, 700]

    def frame(counts: dict[int, tuple[int, int, int, int]]) -> bytes:
        return b"".join(struct.pack("<II4Q", pid, 0, *c) for pid, c in counts.items())

    agg = StatsAggregator()
    agg.receive(report(0, 10), 1, 1.0, frame({9: (5, 500, 7, 700), 3: (1, 100, 0, 0)}))
    assert agg.participant("9") == (5, 500, 7, 700) and agg.participant("4") == (0, 0, 0, 0)
    agg.receive(report(0, 20), 2, 2.0, frame({9: (6, 600, 9, 900)}))  # 3 left
    assert agg.participant("3") == (0, 0, 0, 0)
    agg.receive(report(0, 2), 3, 3.0, frame({9: (1, 100, 1, 100)}))  # restarted
    assert agg.participant("9") == (7, 700, 10, 1000)
    with pytest.raises(ValueError, match="whole records"):
        agg.receive(report(0, 30), 4, 4.0, b"x" * 39)
    assert agg.total("packets_in") == 22
