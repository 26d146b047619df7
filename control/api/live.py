"""Routes: what the web console (control/web/) reads, and the live event streams.

    GET /v1/meetings/{id}/lobby        public: title, state, locked, the recording notice, and
                                       whether joining takes a registration's join token
    GET /v1/meetings/{id}/usage        host or operator: the usage so far (the record, once
                                       ended)
    GET /v1/status                     operator: the node at a glance (workers, drops, joins)
    GET /v1/meetings/{id}/events       host or operator: server-sent events `meeting`,
                                       `usage` and `participants`
    GET /v1/events                     operator: server-sent events `status`
    GET {WebRTC session}/events        the session's holder: server-sent events `state`
                                       (WHEP's server-sent events extension: the WHIP and WHEP
                                       answers name it in a Link header)

An event stream (text/event-stream, https://html.spec.whatwg.org/#server-sent-events) sends
each of its events at once, then again whenever it changed: on a change the control plane
makes (control/live.py) or, for the figures that move by themselves, at the stream's tick
(1 s). Credentials are in the Authorization header as for every call, never in the URL (so a
page reads a stream with fetch(), not EventSource, which cannot send headers); the session's
stream is reached by its session URL, which is the credential WHIP and WHEP give. A stream
whose subject goes away (the meeting deleted) sends `error` with the API's error object and
ends; one that says its meeting ended keeps nothing open: it ends after saying so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from control.answers import (
    Lobby,
    Meeting,
    ParticipantState,
    SentStream,
    Status,
    UsageSoFar,
    WorkerStatus,
)
from control.api.deps import Plane, host_or_operator, operator
from control.api.shapes import meeting_json, usage_json
from control.errors import ApiError, NotFound
from control.live import NODE, meeting_subjects
from control.lookup import find_meeting
from control.media import sending_streams
from control.metrics import worker_dropped, worker_up
from control.nodes import node_json
from control.plane import ControlPlane
from control.registration_settings import registration_enabled
from control.store import MeetingRow, ParticipantRow, StoreError
from control.usage import features_used, usage_figures

router = APIRouter()

TICK_S = 1.0  # figures that move by themselves (packets, reception) are sent this often
GAP_S = 0.2  # at most this often a stream reads again, however fast changes come
KEEPALIVE_S = 15.0  # a comment line when nothing was sent for this long (proxies, NATs)
PAGE = 1000  # participants a meeting's stream lists at most (its `participants.count` says all)
MEETINGS_SHOWN = 200  # open meetings the status lists at most
ENDED_SHOWN = 20  # ended meetings it lists at most

EVENT_STREAM = "text/event-stream"
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {EVENT_STREAM: {}}, "description": "server-sent events"}
}

Events = list[tuple[str, object]]


def _json(data: object) -> str:
    # Keys sorted, so that the text compares equal when the data does. json.dumps escapes
    # line breaks inside strings: one data line per event.
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _frame(event: str, text: str) -> bytes:
    return f"event: {event}\ndata: {text}\n\n".encode()


async def _events(
    plane: ControlPlane,
    subjects: Sequence[Hashable],
    produce: Callable[[], Awaitable[Events]],
    tick: float,
) -> AsyncIterator[bytes]:
    sent: dict[str, str] = {}
    quiet_since = time.monotonic()
    yield b"retry: 2000\n\n"  # how long a client waits before it reconnects
    while not plane.changes.closed:
        version = plane.changes.version_of(subjects)
        try:
            events = await produce()
        except ApiError as exc:
            yield _frame("error", _json({"code": exc.code, "message": exc.message}))
            return
        except StoreError:
            unavailable = {"code": "unavailable", "message": "storage is unavailable; try again"}
            yield _frame("error", _json(unavailable))
            return
        for name, data in events:
            text = _json(data)  # once: compared with the last sent, and sent if it differs
            if sent.get(name) != text:
                sent[name] = text
                quiet_since = time.monotonic()
                yield _frame(name, text)
        if any(name == "end" for name, _ in events):
            return
        if time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield b": keepalive\n\n"
        await asyncio.sleep(GAP_S)
        await plane.changes.wait(subjects, version, tick - GAP_S)


def _stream(
    plane: ControlPlane,
    subjects: Sequence[Hashable],
    produce: Callable[[], Awaitable[Events]],
    tick: float = TICK_S,
) -> StreamingResponse:
    """An event stream of `produce()`'s events, read again when one of `subjects` changes
    (control/live.py) and every `tick` seconds."""
    return StreamingResponse(
        _events(plane, subjects, produce, tick),
        media_type=EVENT_STREAM,
        # Not stored, and not held back by a buffering proxy (nginx reads the last one).
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- what the join page reads --


@router.get("/v1/meetings/{meeting_id}/lobby")
async def lobby(meeting_id: str, plane: Plane) -> Lobby:
    """What the join page shows before anyone joins (public): the title, whether the
    meeting is open or ended, locked, being recorded (the notice a joiner must see), and
    whether joining takes a registration's join token instead of the password."""
    meeting = await find_meeting(plane.store, meeting_id)
    return {
        "id": meeting.id,
        "title": meeting.title,
        "mode": meeting.mode,
        "state": meeting.state,
        "locked": meeting.locked,
        "recording": meeting.recording,
        "registration": registration_enabled(meeting),
    }


# -- a meeting's usage, live --


async def usage_so_far(plane: ControlPlane, meeting_id: str) -> UsageSoFar:
    meeting = await find_meeting(plane.store, meeting_id)
    if meeting.state == "ended":
        records = await plane.service.list_usage(meeting.id)
        if records:
            record = usage_json(records[-1])
            final = {k: v for k, v in record.items() if k not in ("id", "ended_at")}
            return cast(UsageSoFar, {**final, "final": True, "present": 0})
    rows = await plane.store.list_participants(meeting.id)
    now = plane.clock() if meeting.ended_at is None else meeting.ended_at
    total, peak, minutes = usage_figures(
        [(p.joined_at, p.left_at) for p in rows], meeting.created_at, now
    )
    totals = plane.meeting_totals([p.wire_id for p in rows])
    return {
        "meeting_id": meeting.id,
        "final": False,
        "started_at": meeting.created_at,
        "duration_s": max(0.0, now - meeting.created_at),
        "present": sum(1 for p in rows if p.left_at is None and not p.expelled),
        "total_participants": total,
        "peak_participants": peak,
        "participant_minutes": minutes,
        "features": features_used(meeting),
        "packets_in": totals["packets_in"],
        "packets_out": totals["packets_out"],
        "bytes_in": totals["bytes_in"],
        "bytes_out": totals["bytes_out"],
    }


@router.get("/v1/meetings/{meeting_id}/usage", dependencies=[Depends(host_or_operator)])
async def meeting_usage(meeting_id: str, plane: Plane) -> UsageSoFar:
    """The meeting's usage so far: participants (total, peak, present), participant-minutes,
    features, packets and bytes; once it has ended, its usage record's figures."""
    return await usage_so_far(plane, meeting_id)


# -- the node at a glance --


async def status_of(plane: ControlPlane) -> Status:
    stats = plane.stats
    now = time.monotonic()
    workers: list[WorkerStatus] = []
    for index, w in sorted(stats.workers.items()):
        workers.append(
            {
                "worker": index,
                "up": worker_up(w, now),
                "packets_in": w.total("packets_in"),
                "packets_out": w.total("packets_out"),
                "bytes_in": w.total("bytes_in"),
                "bytes_out": w.total("bytes_out"),
                "dropped": worker_dropped(w),
                "restarts": w.restarts,
            }
        )
    meetings = await plane.service.list_meetings(limit=MEETINGS_SHOWN, state="open")
    ended = await plane.service.list_meetings(limit=ENDED_SHOWN, state="ended")
    present = plane.routing.state.present
    return {
        "at": plane.clock(),
        "health": plane.health(),
        "workers": workers,
        "packets_in": stats.total("packets_in"),
        "packets_out": stats.total("packets_out"),
        "bytes_in": stats.total("bytes_in"),
        "bytes_out": stats.total("bytes_out"),
        "drops": stats.drops(),
        "joins": plane.counters.joins,
        "join_failures": dict(sorted(plane.counters.join_failures.items())),
        "meetings": [meeting_json(m) for m in meetings],
        "present": {m.id: present.get(m.wire_id, 0) for m in meetings},
        "ended": [meeting_json(m) for m in ended],
        "nodes": [node_json(n, plane.clock()) for n in await plane.store.list_nodes()],
    }


@router.get("/v1/status", dependencies=[Depends(operator)])
async def status(plane: Plane) -> Status:
    """The node at a glance: health, each worker's packets and bytes in and out and drops
    (totals since the node started: take rates from two readings and their `at`), drops by
    reason, joins and failed joins by reason, the open meetings and who is present, the
    newest ended ones, and the nodes sharing the database."""
    return await status_of(plane)


@router.get(
    "/v1/events",
    dependencies=[Depends(operator)],
    response_class=StreamingResponse,
    responses=_STREAMED,
)
async def status_events(plane: Plane) -> StreamingResponse:
    """Server-sent events: `status` (as GET /v1/status answers) every second."""

    async def produce() -> Events:
        return [("status", await status_of(plane))]

    return _stream(plane, (NODE,), produce)


# -- a meeting, live --


@router.get(
    "/v1/meetings/{meeting_id}/events",
    dependencies=[Depends(host_or_operator)],
    response_class=StreamingResponse,
    responses=_STREAMED,
)
async def meeting_events(meeting_id: str, plane: Plane) -> StreamingResponse:
    """Server-sent events: `meeting` (as GET /v1/meetings/{id} answers, without the join
    throttle), `usage` (as GET .../usage) and `participants` ({"count", "items"}: the first
    1,000 in the order they joined, as GET .../participants lists them), each when it
    changes; packets and reception at most every second."""
    found = await find_meeting(plane.store, meeting_id)
    meeting_id = found.id

    async def produce() -> Events:
        meeting: Meeting = meeting_json(await find_meeting(plane.store, meeting_id))
        people = await plane.service.participants.list(meeting_id, media=plane.media_of, limit=PAGE)
        count = len(people)
        if count == PAGE:
            count = len(await plane.store.list_participants(meeting_id))
        return [
            ("meeting", meeting),
            ("usage", await usage_so_far(plane, meeting_id)),
            ("participants", {"count": count, "items": people}),
        ]

    return _stream(plane, meeting_subjects(found.id, found.wire_id), produce)


# -- a WebRTC session's own state --


@dataclass(frozen=True)
class _Room:
    """One read of a meeting, shared by the event streams of all its WebRTC sessions."""

    meeting: MeetingRow
    people: dict[str, ParticipantRow]  # everyone who joined, by id
    streams: list[SentStream]  # what its present senders send, in the order they joined


async def _room(plane: ControlPlane, meeting_id: str, subjects: Sequence[Hashable]) -> _Room:
    """The meeting as it is at its subjects' version: read once, whoever asks."""

    async def read() -> _Room:
        meeting = await find_meeting(plane.store, meeting_id)
        rows = await plane.store.list_participants(meeting.id)
        present = [p for p in rows if p.left_at is None and not p.expelled]
        streams: list[SentStream] = [
            {"ssrc": s.ssrc, "kind": s.kind} for s in sending_streams(meeting, present)
        ]
        return _Room(meeting, {p.id: p for p in rows}, streams)

    version = plane.changes.version_of(subjects)
    return await plane.changes.read(f"room {meeting_id}", version, read)


@router.get(
    "/v1/meetings/{meeting_id}/webrtc/{participant_id}/{token}/events",
    response_class=StreamingResponse,
    responses=_STREAMED,
)
async def session_events(
    meeting_id: str, participant_id: str, token: str, plane: Plane
) -> StreamingResponse:
    """Server-sent events of a WHIP or WHEP session: `state` (present, left, expelled or
    ended; its role, whether muted, whether the meeting is being recorded, and the streams
    the meeting's present senders send, other than its own) at once and on every change, so
    a page says within a second that its participant was expelled or its meeting ended, and a
    viewer learns of a presenter its answer could not hold yet (it joined first) and can ask
    again. The stream ends after a state other than present."""
    if not plane.webrtc_sessions.matches(participant_id, token):
        raise NotFound("no such WebRTC session")
    found = await find_meeting(plane.store, meeting_id)
    subjects = meeting_subjects(found.id, found.wire_id)
    if (await _room(plane, found.id, subjects)).people.get(participant_id) is None:
        raise NotFound("no such WebRTC session")

    async def produce() -> Events:
        room = await _room(plane, found.id, subjects)
        person = room.people.get(participant_id)
        if person is None:
            raise NotFound("no such WebRTC session")
        own = {s.ssrc for s in person.streams}
        state: ParticipantState = {
            "state": "present",
            "role": person.role,
            "muted": person.muted,
            "recording": room.meeting.recording,
            "streams": [s for s in room.streams if s["ssrc"] not in own],
        }
        if person.expelled:
            state["state"] = "expelled"
        elif room.meeting.state == "ended":
            state["state"] = "ended"
        elif person.left_at is not None:
            state["state"] = "left"
        events: Events = [("state", state)]
        if state["state"] != "present":
            events.append(("end", {}))
        return events

    # Nothing in a session's state moves by itself: it is read again on its meeting's changes,
    # and otherwise only as often as the keepalive goes out.
    return _stream(plane, subjects, produce, tick=KEEPALIVE_S)
