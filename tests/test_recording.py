"""Recording in the data plane: a recorded meeting's packets become an encrypted pcap file
(relay/recording.py, ext/fanout.pxi records_to_pcap) that opens with the recording key only,
holds every packet's plaintext, and that tshark reads as RTP when it is installed."""

from __future__ import annotations

import os
import secrets
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from relay import _core, recording
from tests.conftest import rtcp_sr, rtp
from tests.test_fanout import Worker
from tests.test_forward import AES, HOST_SSRC, MID, Peer, key_material


def read_pcap(data: bytes) -> list[tuple[bytes, int]]:
    """(UDP payload, destination port) of each packet of a LINKTYPE_RAW pcap."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1" and struct.unpack_from("<I", data, 20)[0] == 101
    out, at = [], 24
    while at < len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, at)
        packet = data[at + 16 : at + 16 + incl]
        assert packet[0] == 0x45 and packet[9] == 17
        checksum = sum(struct.unpack("!10H", packet[:20]))
        while checksum >> 16:
            checksum = (checksum & 0xFFFF) + (checksum >> 16)
        assert checksum == 0xFFFF  # the IPv4 header checksum holds
        port = struct.unpack_from("!H", packet, 22)[0]
        out.append((packet[28:], port))
        at += 16 + incl
    return out


def recorded_meeting(tmp_path: Path) -> tuple[Path, bytes, list[bytes], bytes]:
    w = Worker()
    host = Peer(1, AES, key_material(AES), key_material(AES), ("10.0.0.1", 5000), (HOST_SSRC,))
    listener = Peer(2, AES, key_material(AES), key_material(AES), ("10.0.0.2", 5000), ())
    for peer, role in ((host, "host"), (listener, "attendee")):
        w.table.join(
            peer.pid,
            MID,
            role,
            AES,
            peer.uplink,
            peer.downlink,
            ssrcs=peer.ssrcs,
            address=peer.address,
        )
    key = secrets.token_bytes(32)
    recorder = recording.Recorder(tmp_path, key, MID, 0)
    w.feed([(host.out.protect(rtp(0, HOST_SSRC)), host.address)])
    assert w.forwarder.take_exports() == []  # not recorded: nothing handed out
    w.table.set_recording(MID, True)
    plains = [rtp(n, HOST_SSRC, payload=b"recorded %d" % n) for n in range(1, 40)]
    w.feed([(host.out.protect(p), host.address) for p in plains])
    report = rtcp_sr(HOST_SSRC)
    w.feed([(host.out.protect_rtcp(report), host.address)])
    for meeting, records in w.forwarder.take_exports():
        assert meeting == MID
        recorder.write(_core.records_to_pcap(records, 1_800_000_000.25))
    recorder.close()
    return recorder.path, key, plains, report


def test_a_recording_holds_every_packet_and_opens_with_its_key_only(tmp_path: Path) -> None:
    path, key, plains, report = recorded_meeting(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    raw = path.read_bytes()
    assert not any(p[12:] in raw for p in plains)  # encrypted at rest
    assert recording.meeting_of(path) == MID
    packets = read_pcap(recording.decrypt(path, key))
    assert [p for p, port in packets if port == 5004] == plains
    assert [p for p, port in packets if port == 5005] == [report]
    with pytest.raises(recording.RecordingError, match="does not open"):
        recording.decrypt(path, secrets.token_bytes(32))
    damaged = tmp_path / "damaged.rec"
    damaged.write_bytes(raw[:-5])
    with pytest.raises(recording.RecordingError, match="cut off|damaged"):
        recording.decrypt(damaged, key)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_recording_as_rtp(tmp_path: Path) -> None:
    path, key, plains, _ = recorded_meeting(tmp_path)
    pcap = tmp_path / "out.pcap"
    pcap.write_bytes(recording.decrypt(path, key))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    done = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-d",
            "udp.port==5004,rtp",
            "-T",
            "fields",
            "-e",
            "rtp.ssrc",
            "-e",
            "rtp.seq",
            "-Y",
            "rtp",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines() if line]
    assert len(rows) == len(plains)
    assert {int(r[0], 16) for r in rows} == {HOST_SSRC}
    assert [int(r[1]) for r in rows] == list(range(1, 40))


def test_recording_only_on_request_end_to_end(tmp_path: Path) -> None:
    """Through `relay serve`: with recording off, no media anywhere in the data directory;
    switched on by the host, participants are told, and the recording (encrypted on disk)
    holds exactly what was sent while it was on."""
    from tests.test_serve import await_media, join, settle, start_serve, stop_serve

    data = tmp_path / "data"
    serve = start_serve(data, 1)
    try:
        with serve.api() as api:
            r = api.post("/v1/meetings", json={"title": "rec", "password": "pw"})
            meeting = r.json()["id"]
            path = f"/v1/meetings/{meeting}"
            sender = join(api, meeting, "s", 0x7E57)
            listener = join(api, meeting, "l", None)
            # A join's answer comes back once its routing update is published, not applied:
            # wait until the worker forwards to the listener (slow under the sanitizers).
            await_media(sender, listener)
            listener.received.clear()

            def burst(tag: bytes) -> list[bytes]:
                payloads = [
                    b"%s-%d-%s" % (tag, n, secrets.token_hex(8).encode()) for n in range(20)
                ]
                for p in payloads:
                    sender.send(p)
                settle([listener], 0.3)
                return payloads

            before = burst(b"NOT-RECORDED")
            assert len(listener.received) == 20
            assert api.put(f"{path}/controls", json={"recording": True}).json()["recording"]
            late = join(api, meeting, "late", None)  # a newcomer's answer says it is recorded
            answer = api.get(f"{path}/participants").json()
            assert all(p["recording"] for p in answer)
            recorded = burst(b"RECORDED")
            assert not api.put(f"{path}/controls", json={"recording": False}).json()["recording"]
            time.sleep(0.2)
            after = burst(b"AFTER")
            files = api.get(f"{path}/recordings").json()
            assert len(files) == 1 and files[0]["bytes"] > 0
            r = api.get(f"{path}/recordings/{files[0]['name']}")
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/vnd.tcpdump.pcap"
            media = [p[12:] for p, port in read_pcap(r.content) if port == 5004]
            assert media == recorded
            assert api.get(f"{path}/recordings/nope.rec").status_code == 404
            for p in (sender, listener, late):
                p.close()
    finally:
        stop_serve(serve)
    # Nothing sent while recording was off is anywhere in the data directory, and what was
    # recorded is only there encrypted.
    blobs = b"".join(f.read_bytes() for f in data.rglob("*") if f.is_file())
    for payload in before + after + recorded:
        assert payload not in blobs


def test_recordings_past_their_retention_period_are_deleted(tmp_path: Path) -> None:
    from control.recordings import Recordings

    key_file = tmp_path / "recording.key"
    key_file.write_bytes(secrets.token_bytes(32))
    directory = tmp_path / "recordings"
    old = recording.Recorder(directory, key_file.read_bytes(), 7, 0)
    old.close()
    new = recording.Recorder(directory, key_file.read_bytes(), 8, 1)
    new.close()
    now = time.time()
    os.utime(old.path, (now - 31 * 86400, now - 31 * 86400))
    store = Recordings(directory, key_file, retention_days=30)
    assert [r["name"] for r in store.of_meeting(7)] == [old.path.name]
    assert store.sweep(now) == 1
    assert not old.path.exists() and new.path.exists()
    assert store.pcap(8, new.path.name) == _core.PCAP_HEADER
    assert store.delete_meeting(8) == 1 and store.of_meeting(8) == []
