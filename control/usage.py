"""A meeting's usage record, for billing: what it used, computed once when it ends.

Figures: total participants (everyone who joined), the peak present at once, and
participant-minutes; the packet and byte totals the workers last reported; the features used.
A feature switched on is billed even if switched off again before the end: switching locking
or recording on adds it to the meeting's stored features in the same store transaction as the
switch (control/meetings.py, `set_controls`), so a restart in between forgets nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from control.store import MeetingRow, ParticipantRow, Store, UsageRecord
from relay.vocabulary import Mode

__all__ = ["TOTALS", "features_used", "record_usage", "usage_figures"]

TOTALS = ("packets_in", "packets_out", "bytes_in", "bytes_out")


def usage_figures(
    spans: Sequence[tuple[float, float | None]], start: float, end: float
) -> tuple[int, int, float]:
    """(total participants, peak present at once, participant-minutes) of joins and leaves
    (None: still present at `end`), each span clipped to [start, end]. A leave at the same
    instant as a join is counted first, so back-to-back participants do not overlap."""
    events: list[tuple[float, int]] = []
    minutes = 0.0
    for joined, left in spans:
        a = min(max(joined, start), end)
        b = min(max(end if left is None else left, a), end)
        minutes += (b - a) / 60.0
        if b > a:
            events += [(a, 1), (b, -1)]
    peak = present = 0
    for _, delta in sorted(events):
        present += delta
        peak = max(peak, present)
    if not math.isfinite(minutes):
        minutes = 0.0
    return len(spans), peak, minutes


def features_used(meeting: MeetingRow) -> list[str]:
    """What the meeting is billed for: the features it switched on at any time, and
    "webinar" for a webinar."""
    features = set(meeting.features)
    features |= {
        f for f, on in (("locked", meeting.locked), ("recording", meeting.recording)) if on
    }
    if meeting.mode == Mode.WEBINAR:
        features.add("webinar")
    return sorted(features)


async def record_usage(
    store: Store,
    meeting: MeetingRow,
    participants: Sequence[ParticipantRow],
    now: float,
    totals: Mapping[str, int],
) -> UsageRecord:
    """Append the usage record of a meeting ending at `now` (`participants`: everyone who
    joined it; `totals`: packets and bytes, keys of TOTALS)."""
    unknown = set(totals) - set(TOTALS)
    if unknown:
        raise ValueError(f"unknown totals: {sorted(unknown)}")
    total, peak, minutes = usage_figures(
        [(p.joined_at, p.left_at) for p in participants], meeting.created_at, now
    )
    return await store.append_usage(
        meeting_id=meeting.id,
        started_at=meeting.created_at,
        ended_at=max(now, meeting.created_at),
        total_participants=total,
        peak_participants=peak,
        participant_minutes=minutes,
        features=tuple(features_used(meeting)),
        **totals,
    )
