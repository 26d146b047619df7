"""The participants of a meeting once they joined: the list, and the host's controls (mute,
role, expel) and hanging up (`leave`). Joining itself is control/meetings.py's; what both
share of the open meetings is control/rooms.py's.

Every host or operator action appends its audit entry here once it succeeded (`by`: who).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from control.answers import Actor, Media, Participant, ParticipantUpdate
from control.audit import Audit
from control.errors import Conflict, NotFound
from control.keys import new_master_key
from control.lookup import find_meeting, find_open_meeting
from control.media import Describer, described, may_send, routing_update, sending_streams
from control.rooms import Rooms
from control.store import MeetingRow, ParticipantRow
from relay import wire
from relay.vocabulary import Kind, Role

__all__ = ["MediaOf", "ParticipantService"]

log = logging.getLogger("control.participants")

MediaOf = Callable[[int], Media]  # wire id -> what the workers last reported of it


class ParticipantService:
    def __init__(self, rooms: Rooms, describer: Describer, audit: Audit) -> None:
        self.rooms = rooms
        self.store = rooms.store
        self.describer = describer
        self.audit = audit

    async def list(
        self,
        meeting_id: str,
        *,
        media: MediaOf,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Participant]:
        """A page of the meeting's participants, in the order they joined (all of them
        without `limit`), each with what the workers last reported of its media."""
        meeting = await find_meeting(self.store, meeting_id)
        rows = await self.store.list_participants(meeting.id, limit=limit, offset=offset)
        return [
            {
                "id": p.id,
                "name": p.name,
                "role": p.role,
                "worker": p.worker,
                "muted": p.muted,
                "expelled": p.expelled,
                "joined_at": p.joined_at,
                "left_at": p.left_at,
                "streams": [
                    {"ssrc": s.ssrc, "kind": Kind(s.kind), "pt": s.pt, "codec": s.codec}
                    for s in p.streams
                ],
                "recording": meeting.recording and p.left_at is None,  # being recorded now
                "media": media(p.wire_id),
            }
            for p in rows
        ]

    async def _present(self, meeting: MeetingRow, participant_id: str) -> ParticipantRow:
        row = None
        if 0 < len(participant_id) <= 64:
            row = await self.store.get_participant(participant_id, meeting_id=meeting.id)
        if row is None:
            raise NotFound("no such participant in this meeting")
        if row.expelled:
            raise Conflict("this participant was expelled")
        if row.left_at is not None:
            raise Conflict("this participant has left")
        return row

    async def update(
        self,
        meeting_id: str,
        participant_id: str,
        *,
        now: float,
        by: Actor,
        muted: bool | None = None,
        role: Role | None = None,
        expel: bool | None = None,
    ) -> ParticipantUpdate:
        """Expel; or change the role and mute or unmute. Expelling marks the participant
        expelled and gone: that participant id never comes back (the person may join again as
        a new participant unless the host locks the meeting). A role change that lets an
        attendee send issues new keys, returned under "srtp" and "sdp" as in a join answer."""
        meeting = await find_open_meeting(self.store, meeting_id)
        # Under the meeting's lock, as joins: what the store says and what the workers were
        # told change together (control/cluster.py reads the one to mend the other).
        async with self.rooms.lock(meeting.id):
            return await self._update(meeting, participant_id, now, by, muted, role, expel)

    async def _update(
        self,
        meeting: MeetingRow,
        participant_id: str,
        now: float,
        by: Actor,
        muted: bool | None,
        role: Role | None,
        expel: bool | None,
    ) -> ParticipantUpdate:
        row = await self._present(meeting, participant_id)
        if expel:
            roster = await self.rooms.roster(meeting)  # before the store changes: it counts
            self.rooms.gone(row)
            row = await self.rooms.update(row.id, expelled=True, left_at=now)
            roster.left(row)
            await self.rooms.publish(wire.ParticipantEjected(row.wire_id))
            log.info("participant %s expelled from meeting %s", row.id, meeting.id)
            await self.audit.append(by, "participant.expel", meeting.id, row.id, now=now)
            return {"id": row.id, "expelled": True}
        answer: ParticipantUpdate = {"id": row.id, "expelled": False}
        if role is not None and role != row.role:
            answer.update(await self._change_role(meeting, row, role))
            detail = {"from": row.role, "to": role}
            await self.audit.append(by, "participant.role", meeting.id, row.id, detail, now=now)
            row = await self.rooms.participant(row.id)
        if muted is not None and muted != row.muted:
            row = await self.rooms.update(row.id, muted=muted)
            await self.rooms.publish(wire.ParticipantMuted(row.wire_id, muted))
            action = "participant.mute" if muted else "participant.unmute"
            await self.audit.append(by, action, meeting.id, row.id, now=now)
        answer.update(
            {"id": row.id, "role": row.role, "muted": row.muted, "expelled": row.expelled}
        )
        return answer

    async def _change_role(
        self, meeting: MeetingRow, row: ParticipantRow, role: Role
    ) -> ParticipantUpdate:
        """The role changes: ParticipantLeft, then ParticipantJoined under the same wire id.
        A role that may send, given to one that may not, gets new keys (the keys an attendee
        held never become send keys): returned as in a join answer."""
        declared = list(row.streams)
        if declared and not may_send(meeting.mode, role):
            raise Conflict("a participant that declared streams cannot become an attendee")
        fresh = not may_send(meeting.mode, row.role) and may_send(meeting.mode, role)
        if fresh:
            uplink, downlink = new_master_key(meeting.suite), new_master_key(meeting.suite)
            await self.rooms.update(
                row.id,
                role=role,
                uplink_sealed=self.rooms.key_box.seal(uplink, row.id),
                downlink_sealed=self.rooms.key_box.seal(downlink, row.id),
            )
        else:
            uplink, downlink = self.rooms.keys(row)
            await self.rooms.update(row.id, role=role)
        roster = await self.rooms.roster(meeting)
        roster.changed(await self.rooms.participant(row.id))
        # A listener keeps the streams (and ports) its join answer described; anyone else
        # gets the meeting's streams as they are now, as in a join answer.
        if row.receive_at is not None:
            meeting_streams = described(meeting, row, roster.all_senders())
        else:
            others = [p for p in roster.present_senders() if p.id != row.id]
            meeting_streams = sending_streams(meeting, others)
        publish = self.rooms.publish
        if self.rooms.local(row):
            await publish(wire.ParticipantLeft(row.wire_id))
            await publish(routing_update(meeting, row, uplink, downlink, role, meeting_streams))
            if row.muted:  # ParticipantLeft cleared the flag in the workers' table
                await publish(wire.ParticipantMuted(row.wire_id, True))
        else:  # its node's control plane publishes the change (control/cluster.py)
            await self.rooms.tell_home(await self.rooms.participant(row.id), False)
        if not fresh:
            return {"id": row.id, "expelled": False}
        changed = await self.rooms.participant(row.id)
        full = self.describer.answer(meeting, changed, uplink, downlink, declared, meeting_streams)
        return {
            "id": row.id,
            "expelled": False,
            "srtp": full["srtp"],
            "sdp": full["sdp"],
            "relay": full["relay"],
            "ffmpeg": full["ffmpeg"],
        }

    async def leave(self, meeting_id: str, participant_id: str, *, now: float) -> None:
        """The participant is gone (hung up): ParticipantLeft, and its time is counted."""
        meeting = await find_open_meeting(self.store, meeting_id)
        async with self.rooms.lock(meeting.id):  # as `update`
            row = await self._present(meeting, participant_id)
            roster = await self.rooms.roster(meeting)  # before the store changes: it counts
            self.rooms.gone(row)
            roster.left(await self.rooms.update(row.id, left_at=now))
            await self.rooms.publish(wire.ParticipantLeft(row.wire_id))
