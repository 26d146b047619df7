"""Finding a meeting for a service call: one rule for every service (meetings,
registration): NotFound for an id no meeting could have or has, Ended once it has ended.
Neither message names the id asked for (control/errors.py: no value sent comes back)."""

from __future__ import annotations

from control.errors import Ended, NotFound
from control.store import MeetingRow, Store


async def find_meeting(store: Store, meeting_id: str) -> MeetingRow:
    """The meeting, or NotFound (also for an id no meeting could have: ids are at most 64
    characters, and a path may hold anything)."""
    if not meeting_id or len(meeting_id) > 64:
        raise NotFound("no such meeting")
    meeting = await store.get_meeting(meeting_id)
    if meeting is None:
        raise NotFound("no such meeting")
    return meeting


async def find_open_meeting(store: Store, meeting_id: str) -> MeetingRow:
    """The meeting, NotFound, or Ended once it has ended."""
    meeting = await find_meeting(store, meeting_id)
    if meeting.state == "ended":
        raise Ended("this meeting has ended")
    return meeting
