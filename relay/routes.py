"""Applying the control plane's routing messages to a worker's RouteTable.

The clone pattern: a Snapshot sets the whole state as of update number `seq`; updates follow,
numbered seq+1, seq+2, ... RouteReplica applies them in order and notices a gap (a lost
update), after which the worker must ask for a new snapshot. Everything runs between batches,
on the worker's one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from relay import wire

if TYPE_CHECKING:
    from relay.webrtc import WebRtcPeers


class RouteReplica:
    """Keeps a RouteTable equal to the control plane's routing state.

    With several workers, `index` is this worker's: a participant homed elsewhere joins the
    table as not local, and `on_local(meeting, True/False)` is called when a meeting gets its
    first member homed here or loses its last, which is when the worker subscribes to (or
    unsubscribes from) the other workers' packets of that meeting."""

    def __init__(
        self,
        table: Any,
        index: int | None = None,
        on_local: Callable[[int, bool], None] | None = None,
        on_recording: Callable[[int, bool], None] | None = None,
        webrtc: WebRtcPeers | None = None,
    ) -> None:
        self.table = table
        self.webrtc = webrtc  # the WebRTC peers homed here, connected by this worker
        self.index = index
        self.on_local = on_local
        self.on_recording = on_recording  # the worker opens and closes recording files
        self.seq = -1  # last update applied; -1 before the first snapshot
        self.needs_snapshot = True
        self.meetings: set[int] = set()  # meetings the table holds
        self.homes: dict[int, tuple[int, bool]] = {}  # participant -> (meeting, homed here)
        self.local: dict[int, int] = {}  # meeting -> members homed here

    def _is_local(self, joined: wire.ParticipantJoined) -> bool:
        return joined.worker is None or self.index is None or joined.worker == self.index

    def _count(self, meeting: int, delta: int) -> None:
        before = self.local.get(meeting, 0)
        after = before + delta
        if after:
            self.local[meeting] = after
        else:
            self.local.pop(meeting, None)
        if self.on_local is not None and (before == 0) != (after == 0):
            self.on_local(meeting, after > 0)

    def apply_snapshot(self, snapshot: wire.Snapshot) -> None:
        """Replace everything with the snapshot's state."""
        for meeting in self.meetings:
            self.table.close_meeting(meeting)
            if self.on_recording is not None:
                self.on_recording(meeting, False)  # the snapshot says again what records
        self.meetings.clear()
        for meeting in list(self.local):
            self._count(meeting, -self.local[meeting])
        self.homes.clear()
        for opened in snapshot.meetings:
            self._apply(opened)
        for joined in snapshot.participants:
            self._apply(joined)
        for meeting in snapshot.ended:
            self._apply(wire.MeetingEnded(meeting))
        for participant in snapshot.muted:
            self._apply(wire.ParticipantMuted(participant, True))
        for participant in snapshot.ejected:
            self._apply(wire.ParticipantEjected(participant))
        for meeting in snapshot.recording:
            self._apply(wire.MeetingRecording(meeting, True))
        if self.webrtc is not None:  # their keys and addresses again, or gone
            self.webrtc.resync(p for p, (_, local) in self.homes.items() if local)
        # What the ledger held for meetings the snapshot no longer has: they are over.
        self.table.ledger_prune()
        self.seq = snapshot.seq
        self.needs_snapshot = False

    def apply(self, seq: int, update: wire.Update | wire.Heartbeat) -> bool:
        """Apply update number seq. False (and needs_snapshot) if updates were missed. A
        heartbeat carries the number of the last update: past ours, we missed some."""
        if self.needs_snapshot or seq <= self.seq:
            return not self.needs_snapshot  # old news (already in the snapshot)
        if isinstance(update, wire.Heartbeat) or seq != self.seq + 1:
            self.needs_snapshot = True
            return False
        self._apply(update)
        self.seq = seq
        return True

    def _apply(self, update: wire.Update) -> None:
        t = self.table
        if isinstance(update, wire.MeetingOpened):
            t.open_meeting(update.meeting, update.mode)
            self.meetings.add(update.meeting)
        elif isinstance(update, wire.MeetingEnded):
            t.end_meeting(update.meeting)
            if self.webrtc is not None:  # its WebRTC peers' sessions end: close their DTLS
                for participant, (meeting, local) in self.homes.items():
                    if meeting == update.meeting and local:
                        self.webrtc.left(participant)
            if self.on_recording is not None:
                self.on_recording(update.meeting, False)  # nothing more to record
        elif isinstance(update, wire.ParticipantJoined):
            local = self._is_local(update)
            t.join(
                update.participant,
                update.meeting,
                update.role,
                update.suite,
                update.uplink,
                update.downlink,
                [s.ssrc for s in update.streams],
                update.address,
                local=local,
                receive_ports=update.receive_ports,
                address_confirmed=update.address_confirmed,
                source_hint=update.source_hint,
                payload_types=update.payload_types,
                video_ssrcs=[s.ssrc for s in update.streams if s.kind == "video"],
            )
            self.homes[update.participant] = (update.meeting, local)
            if local:
                self._count(update.meeting, 1)
                if self.webrtc is not None:
                    self.webrtc.joined(update)
        elif isinstance(update, wire.ParticipantLeft):
            t.leave(update.participant)
            meeting, local = self.homes.pop(update.participant, (0, False))
            if local:
                self._count(meeting, -1)
                if self.webrtc is not None:
                    self.webrtc.left(update.participant)
        elif isinstance(update, wire.ParticipantEjected):
            t.eject(update.participant)
            if self.webrtc is not None:  # a close_notify ends a WebRTC peer's session at once
                self.webrtc.left(update.participant)
        elif isinstance(update, wire.ParticipantMuted):
            t.mute(update.participant, update.muted)
        elif isinstance(update, wire.MeetingRecording):
            t.set_recording(update.meeting, update.on)
            if self.on_recording is not None:
                self.on_recording(update.meeting, update.on)
