"""Routing messages: encoding round trips, refusal of bad input, and the clone-pattern replica."""

from __future__ import annotations

import json

import pytest

from relay import _core, wire
from relay.routes import RouteReplica

KEY = bytes(range(30))


def sample_snapshot(seq: int = 5) -> wire.Snapshot:
    return wire.Snapshot(
        seq,
        (wire.MeetingOpened(1, "webinar"),),
        (
            wire.ParticipantJoined(
                1,
                1,
                "host",
                "AES_CM_128_HMAC_SHA1_80",
                KEY,
                KEY,
                (wire.Stream(0x1234, "video", 96, "VP8/90000"),),
            ),
            wire.ParticipantJoined(
                2, 1, "attendee", "AES_CM_128_HMAC_SHA1_80", KEY, KEY, (), ("127.0.0.1", 5004)
            ),
        ),
    )


@pytest.mark.parametrize(
    "message",
    [
        sample_snapshot(),
        wire.MeetingOpened(3, "meeting"),
        wire.MeetingEnded(3),
        wire.ParticipantLeft(9),
        wire.ParticipantEjected(9),
        wire.ParticipantMuted(9, True),
        wire.ParticipantJoined(
            4, 3, "panelist", "AEAD_AES_256_GCM", bytes(44), bytes(44), (), ("::1", 9000)
        ),
        wire.ParticipantJoined(
            5,
            3,
            "attendee",
            "AEAD_AES_128_GCM",
            bytes(28),
            bytes(28),
            payload_types=((0x1234, 120), (0x5678, 109)),
            webrtc=wire.WebRtcPeer("rlay", "p" * 24, "peer", "sha-256 " + "AB:" * 31 + "CD"),
        ),
    ],
)
def test_round_trip(message: wire.Message) -> None:
    assert wire.decode(wire.encode(message)) == message


@pytest.mark.parametrize(
    ("frames", "error"),
    [
        ([b"", b"2", b"{}"], "version"),
        ([b"", b"1", b"not json"], "JSON"),
        ([b"", b"1", b'{"kind": "nope"}'], "unknown message kind"),
        ([b"", b"1", b'{"kind": "participant_muted"}'], "bad participant_muted"),
        ([b"", b"1"], "3 frames"),
        (
            [
                b"",
                b"1",
                json.dumps(
                    {
                        "kind": "participant_joined",
                        "participant": 1,
                        "meeting": 1,
                        "role": "emperor",
                        "suite": "x",
                        "uplink": "",
                        "downlink": "",
                    }
                ).encode(),
            ],
            "role",
        ),
        (
            [
                b"",
                b"1",
                json.dumps({"kind": "meeting_opened", "meeting": 1, "mode": "party"}).encode(),
            ],
            "mode",
        ),
        (
            [
                b"",
                b"1",
                json.dumps(
                    {
                        "kind": "participant_joined",
                        "participant": 1,
                        "meeting": 1,
                        "role": "host",
                        "suite": "x",
                        "uplink": "!!",
                        "downlink": "",
                    }
                ).encode(),
            ],
            "base64",
        ),
    ],
)
def test_bad_messages_raise_wire_error(frames: list[bytes], error: str) -> None:
    with pytest.raises(wire.WireError, match=error):
        wire.decode(frames)


def test_bad_webrtc_fields_raise_wire_error() -> None:
    base = wire.to_json(
        wire.ParticipantJoined(5, 3, "attendee", "AEAD_AES_128_GCM", bytes(28), bytes(28))
    )
    peer = {"ice_ufrag": "u", "ice_pwd": "p", "remote_ufrag": "r", "fingerprint": "sha-256 AB"}
    for change, error in (
        ({"payload_types": [[1, 128]]}, "payload type"),
        ({"payload_types": {"1": 2}}, "list"),
        ({"payload_types": [[1, 2, 3]]}, "payload type"),
        ({"webrtc": "yes"}, "object"),
        ({"webrtc": {"ice_ufrag": "u"}}, "ice_pwd"),
        ({"webrtc": {**peer, "ice_pwd": ""}}, "non-empty"),
        ({"webrtc": {**peer, "dtls_role": "both"}}, "dtls_role"),
    ):
        with pytest.raises(wire.WireError, match=error):
            wire.from_json({**base, **change})


def test_parse_address() -> None:
    assert wire.parse_address("127.0.0.1:5004") == ("127.0.0.1", 5004)
    assert wire.parse_address("[::1]:5004") == ("::1", 5004)
    for bad in ("127.0.0.1", "host:5004", "127.0.0.1:0", "127.0.0.1:70000"):
        with pytest.raises(wire.WireError):
            wire.parse_address(bad)


def test_snapshot_file_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "table.json"
    wire.save_snapshot(sample_snapshot(), path)
    assert wire.load_snapshot(path) == sample_snapshot()


def test_replica_applies_in_order_and_notices_gaps() -> None:
    table = _core.RouteTable()
    replica = RouteReplica(table)
    assert replica.needs_snapshot
    assert not replica.apply(1, wire.MeetingOpened(7))  # nothing before a snapshot
    replica.apply_snapshot(sample_snapshot(seq=5))
    assert len(table) == 2 and not replica.needs_snapshot
    assert replica.apply(5, wire.ParticipantLeft(2))  # already in the snapshot: ignored
    assert len(table) == 2
    assert replica.apply(6, wire.ParticipantMuted(1, True))
    assert not replica.apply(8, wire.ParticipantLeft(2))  # 7 went missing
    assert replica.needs_snapshot and len(table) == 2
    replica.apply_snapshot(sample_snapshot(seq=8))  # a new snapshot replaces everything
    assert len(table) == 2 and replica.seq == 8
    assert replica.apply(9, wire.ParticipantLeft(2))
    assert len(table) == 1
