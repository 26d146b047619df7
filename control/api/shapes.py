"""How the HTTP API shapes what it answers from the store's rows, in one place."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

from control.store import MeetingRow, UsageRecord


def meeting_json(m: MeetingRow) -> dict[str, Any]:
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


def usage_json(u: UsageRecord) -> dict[str, Any]:
    body = dataclasses.asdict(u)
    body["features"] = list(u.features)
    return body


USAGE_FIELDS = [f.name for f in dataclasses.fields(UsageRecord)]


def usage_csv(records: list[UsageRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(USAGE_FIELDS)
    for u in records:
        row = usage_json(u)
        row["features"] = " ".join(u.features)
        writer.writerow([row[name] for name in USAGE_FIELDS])
    return out.getvalue()
