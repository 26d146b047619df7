"""How the HTTP API shapes what it answers from the store's rows, in one place (the answers'
types: control/answers.py)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

from control import answers
from control.store import MeetingRow, UsageRecord


def meeting_json(m: MeetingRow) -> answers.Meeting:
    return {
        "id": m.id,
        "title": m.title,
        "mode": m.mode,
        "suite": m.suite,
        "state": m.state,
        "locked": m.locked,
        "recording": m.recording,
        "created_at": m.created_at,
        "ended_at": m.ended_at,
        "registration": None if m.registration is None else json.loads(m.registration),
    }


def usage_json(u: UsageRecord) -> answers.UsageRecord:
    return {
        "id": u.id,
        "meeting_id": u.meeting_id,
        "started_at": u.started_at,
        "ended_at": u.ended_at,
        "duration_s": u.duration_s,
        "total_participants": u.total_participants,
        "peak_participants": u.peak_participants,
        "participant_minutes": u.participant_minutes,
        "features": list(u.features),
        "packets_in": u.packets_in,
        "packets_out": u.packets_out,
        "bytes_in": u.bytes_in,
        "bytes_out": u.bytes_out,
    }


USAGE_FIELDS = [f.name for f in dataclasses.fields(UsageRecord)]


def usage_csv(records: list[UsageRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(USAGE_FIELDS)
    for u in records:
        row = dataclasses.asdict(u)
        row["features"] = " ".join(u.features)
        writer.writerow([row[name] for name in USAGE_FIELDS])
    return out.getvalue()
