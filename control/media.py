"""A participant's media as each side is told it: the routing update the workers get, and
the SDP and join answer it gets.

Shared by joining, role changes and the restart path (control/meetings.py), so that a
participant is described the same way whichever of them describes it.

- Who may send: everyone in a meeting; in a webinar, hosts and panelists (attendees receive
  only).
- What a listener is told: a client that gave `receive_at` gets stream k of the meeting's
  streams described in its SDP on port + 2k (control/sdp.py), and the worker sends stream k
  there. The streams are those of the senders present when it joined, in the order they
  joined; a later change of role describes the same ones, so the ports stay.
- Consent: a listener's address is confirmed only by a join from that address (or by the
  operator's own service); a worker remembers a confirmation in its ledger (relay/ledger.py),
  so an update or snapshot without one takes nothing back (docs/SECURITY.md, "No
  reflection: consent before media").
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from control import ffmpeg
from control.answers import JoinAnswer
from control.errors import Invalid
from control.sdp import listener_sdp, sender_sdp
from control.store import MeetingRow, ParticipantRow
from relay import wire
from relay.vocabulary import Address, Mode, Role

__all__ = ["Describer", "described", "may_send", "routing_update"]


def may_send(mode: Mode, role: Role) -> bool:
    return role != Role.ATTENDEE or mode == Mode.MEETING


def sending_streams(meeting: MeetingRow, senders: Sequence[ParticipantRow]) -> list[wire.Stream]:
    """The streams of those among `senders` that may send, in their order."""
    return [s for p in senders if may_send(meeting.mode, p.role) for s in p.streams]


def described(
    meeting: MeetingRow, row: ParticipantRow, senders: Sequence[ParticipantRow]
) -> list[wire.Stream]:
    """The meeting's streams as `row`'s join answer described them: those of the senders
    present when it joined (stored before it, not gone by then) that may send, in the order
    they joined. The same from the join itself and, later, from the store. (`senders` may
    hold everyone: those that declared no streams add none.)"""
    before = [
        p
        for p in senders
        if p.wire_id < row.wire_id and (p.left_at is None or p.left_at > row.joined_at)
    ]
    before.sort(key=lambda p: (p.joined_at, p.id))
    return sending_streams(meeting, before)


def routing_update(
    meeting: MeetingRow,
    row: ParticipantRow,
    uplink: bytes,
    downlink: bytes,
    role: Role | None = None,
    meeting_streams: Sequence[wire.Stream] = (),
    *,
    address_confirmed: bool = False,
    source_hint: str | None = None,
    payload_types: tuple[tuple[int, int], ...] | None = None,
    webrtc: wire.WebRtcPeer | None = None,
) -> wire.ParticipantJoined:
    """The routing update for a participant as stored (its role may be changing). A listener
    gets stream k of `meeting_streams` (what its SDP described) on port + 2k."""
    address = row.receive_at
    ports: tuple[tuple[int, int], ...] = ()
    if address is not None:
        ports = tuple((s.ssrc, address.port + 2 * k) for k, s in enumerate(meeting_streams))
    return wire.ParticipantJoined(
        row.wire_id,
        meeting.wire_id,
        role or row.role,
        meeting.suite,
        uplink,
        downlink,
        row.streams,
        address,
        row.worker,
        ports,
        address_confirmed,
        source_hint,
        payload_types,
        webrtc,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Describer:
    """Writes a participant's SDP and join answer: where the relay receives (worker i on
    media_port + 2i) and the keys."""

    def __init__(self, relay_host: str, media_port: int) -> None:
        self.relay_host = relay_host
        self.media_port = media_port

    def port(self, worker: int) -> int:
        return self.media_port + 2 * worker

    def sdp(
        self,
        meeting: MeetingRow,
        worker: int,
        receive_at: Address | None,
        downlink: bytes,
        declared: Sequence[wire.Stream],
        meeting_streams: Sequence[wire.Stream],
        session_id: int,
    ) -> str:
        """The participant's SDP (control/sdp.py); Invalid when what it asked for cannot be
        described (a receive_at port with no room for every stream of the meeting)."""
        try:
            if receive_at is not None:
                return listener_sdp(
                    receive_at, list(meeting_streams), meeting.suite, downlink, session_id
                )
            return sender_sdp(
                self.relay_host,
                self.port(worker),
                list(declared),
                meeting.suite,
                downlink,
                session_id,
            )
        except ValueError as exc:
            raise Invalid(str(exc)) from None

    def answer(
        self,
        meeting: MeetingRow,
        row: ParticipantRow,
        uplink: bytes,
        downlink: bytes,
        declared: Sequence[wire.Stream],
        meeting_streams: Sequence[wire.Stream],
    ) -> JoinAnswer:
        """The join answer: where to send, the keys, the SDP, ffmpeg's arguments."""
        receive_at = row.receive_at
        sdp = self.sdp(
            meeting, row.worker, receive_at, downlink, declared, meeting_streams, row.wire_id
        )
        port = self.port(row.worker)
        return {
            "participant_id": row.id,
            "role": row.role,
            "relay": {"host": self.relay_host, "port": port},
            "srtp": {
                "suite": meeting.suite,
                "uplink": _b64(uplink),
                "downlink": _b64(downlink),
            },
            "sdp": sdp,
            "recording": meeting.recording,  # participants are told when they are recorded
            "ffmpeg": ffmpeg.arguments(
                meeting.suite,
                uplink,
                self.relay_host,
                port,
                declared,
                listener=receive_at is not None,
            ),
            "node": row.node or "",
            "apis": [],
        }
