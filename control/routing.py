"""The control plane's side of routing: the ZeroMQ "clone" pattern (zguide, chapter 5).

The control plane owns the routing state. Every change is a numbered update published on a PUB
socket as [seq, wire version, body]; a worker that starts (or restarts, or notices a gap in the
numbers) asks the ROUTER socket for a snapshot, applies it, and then applies the updates
numbered after it. RoutingState is the sans-IO part (the state and its numbering);
RoutingServer binds the sockets and answers snapshot requests.

Wire frames:
    update (PUB):              [b"<seq>", b"1", json]
    heartbeat (PUB):           [b"<seq of the last update>", b"1", {"kind": "heartbeat"}]
    snapshot request (DEALER): [b"", b"snapshot"]
    snapshot reply (ROUTER):   [identity, b"", b"<seq>", b"1", json of a wire.Snapshot]

The worker's side is in relay/worker.py (control may import relay's wire messages; relay never
imports control).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import zmq
import zmq.asyncio

from relay import wire

log = logging.getLogger("control.routing")

HEARTBEAT_S = 0.2  # seconds: how soon a worker notices updates it missed


class RoutingState:
    """The routing state as a snapshot plus a sequence number: apply updates, take snapshots.

    The invariant the clone pattern rests on: snapshot() taken at seq N, followed by the
    updates numbered N+1.., gives the same state as snapshot() taken later.
    """

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.meetings: dict[int, wire.MeetingOpened] = {}
        self.participants: dict[int, wire.ParticipantJoined] = {}
        self.ended: set[int] = set()
        self.muted: set[int] = set()
        self.ejected: set[int] = set()
        self.recording: set[int] = set()
        # Participants neither left nor ejected, per meeting, kept as updates come: what
        # /healthz and /metrics show without counting everyone each time.
        self.present: dict[int, int] = {}

    def _count(self, participant: int, delta: int) -> None:
        joined = self.participants.get(participant)
        if joined is not None and participant not in self.ejected:
            self.present[joined.meeting] = self.present.get(joined.meeting, 0) + delta

    @classmethod
    def from_snapshot(cls, snapshot: wire.Snapshot) -> RoutingState:
        state = cls(snapshot.seq)
        state.meetings = {m.meeting: m for m in snapshot.meetings}
        state.participants = {p.participant: p for p in snapshot.participants}
        state.ended, state.muted = set(snapshot.ended), set(snapshot.muted)
        state.ejected = set(snapshot.ejected)
        state.recording = set(snapshot.recording)
        for participant in state.participants:
            state._count(participant, 1)
        return state

    def apply(self, update: wire.Update) -> int:
        """Record an update; returns its number."""
        if isinstance(update, wire.MeetingOpened):
            self.meetings[update.meeting] = update
        elif isinstance(update, wire.MeetingEnded):
            self.ended.add(update.meeting)
            self.recording.discard(update.meeting)
        elif isinstance(update, wire.ParticipantJoined):
            self._count(update.participant, -1)  # a role change joins again: counted once
            self.participants[update.participant] = update
            self._count(update.participant, 1)
        elif isinstance(update, wire.ParticipantLeft):
            self._count(update.participant, -1)
            self.participants.pop(update.participant, None)
            self.muted.discard(update.participant)
            self.ejected.discard(update.participant)
        elif isinstance(update, wire.ParticipantEjected):
            self._count(update.participant, -1)
            self.ejected.add(update.participant)
        elif isinstance(update, wire.ParticipantMuted):
            (self.muted.add if update.muted else self.muted.discard)(update.participant)
        elif isinstance(update, wire.MeetingRecording):
            (self.recording.add if update.on else self.recording.discard)(update.meeting)
        self.seq += 1
        return self.seq

    def meeting_of(self, update: wire.Update) -> int | None:
        """The wire id of the meeting an update concerns (asked before it is applied: a
        participant that leaves is forgotten then), or None."""
        meeting = getattr(update, "meeting", None)
        if isinstance(meeting, int):
            return meeting
        participant = getattr(update, "participant", None)
        joined = self.participants.get(participant) if isinstance(participant, int) else None
        return None if joined is None else joined.meeting

    def snapshot(self) -> wire.Snapshot:
        """The whole state at self.seq."""
        return wire.Snapshot(
            self.seq,
            tuple(self.meetings.values()),
            tuple(self.participants.values()),
            tuple(sorted(self.ended)),
            tuple(sorted(self.muted)),
            tuple(sorted(self.ejected)),
            tuple(sorted(self.recording)),
        )


Journal = Callable[[int, str], Awaitable[object]]

# Fields of an update that the journal leaves out: keys are secrets and addresses (where a
# participant receives, where its join came from) personal data, and the journal only has to
# carry the numbering (and a trace of what happened) over a restart; the state itself is
# rebuilt from the store.
_NOT_JOURNALED = ("uplink", "downlink", "address", "source_hint", "webrtc")


def journal_body(update: wire.Update) -> str:
    """An update as the journal keeps it: its kind and ids, no keys, no addresses."""
    body = {k: v for k, v in wire.to_json(update).items() if k not in _NOT_JOURNALED}
    return json.dumps(body, separators=(",", ":"))


class RoutingServer:
    """Publishes numbered updates and serves snapshots, on asyncio.

    With a `journal` (normally the store's `append_routing_update`), each update is recorded
    under its number before it is applied and published, so a control plane that restarts
    continues the numbering the workers follow; publishing is serialised so that numbers are
    assigned in the order updates go out."""

    def __init__(
        self,
        pub_endpoint: str,
        snapshot_endpoint: str,
        state: RoutingState | None = None,
        context: zmq.asyncio.Context | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.state = state or RoutingState()
        self.journal = journal
        self._publishing = asyncio.Lock()
        self.context = context or zmq.asyncio.Context.instance()
        self.pub: zmq.asyncio.Socket = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, 100_000)
        self.pub.bind(pub_endpoint)
        self.router: zmq.asyncio.Socket = self.context.socket(zmq.ROUTER)
        self.router.bind(snapshot_endpoint)
        self._serving: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None
        # Called after each update goes out, with the wire id of the meeting it concerns (the
        # control plane's live pages: control/live.py).
        self.changed: Callable[[int | None], None] = lambda _meeting: None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._serving = loop.create_task(self._serve_snapshots())
        self._beating = loop.create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        """The last update's number, every HEARTBEAT_S: how a worker that missed updates
        (whose subscription was not yet connected when they went out) finds out."""
        frames = wire.encode(wire.Heartbeat())[1:]
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            async with self._publishing:
                await self.pub.send_multipart([str(self.state.seq).encode(), *frames])

    async def publish(self, update: wire.Update) -> int:
        async with self._publishing:
            if self.journal is not None:
                await self.journal(self.state.seq + 1, journal_body(update))
            meeting = self.state.meeting_of(update)
            seq = self.state.apply(update)
            await self.pub.send_multipart([str(seq).encode(), *wire.encode(update)[1:]])
        self.changed(meeting)
        return seq

    async def _serve_snapshots(self) -> None:
        while True:
            frames = await self.router.recv_multipart()
            if len(frames) != 3 or frames[1] != b"" or frames[2] != wire.SNAPSHOT_REQUEST:
                log.warning("ignored a malformed snapshot request")
                continue
            reply = wire.encode(self.state.snapshot())[1:]
            await self.router.send_multipart([frames[0], b"", str(self.state.seq).encode(), *reply])

    async def close(self) -> None:
        for task in (self._serving, self._beating):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.pub.close(0)
        self.router.close(0)
