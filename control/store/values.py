"""How a few values are stored: the columns whose text encodes a typed value, and new ids.

The store takes and returns typed values (control/store/rows.py) and checks none of them
again: the HTTP API's request models check input once, at the edge (docs/ARCHITECTURE.md,
"Validation once, at the edge"), and what the services pass the store is typed. A StrEnum
(`Role`, `Mode`, `Suite`) is its own text, so SQL sees plain words and a read makes the member
again. The rest is encoded here: a listener's `Address` as "ip:port", a participant's streams
and a meeting's or a usage record's feature names as JSON arrays. A time a row is built
with is made a float (an int passes for a float to the type checker), so that a row the store
returns is the row it reads back.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable

from relay.vocabulary import Address
from relay.wire import Stream

__all__ = [
    "decode_address",
    "decode_features",
    "decode_streams",
    "encode_address",
    "encode_features",
    "encode_streams",
    "merge_features",
    "new_id",
]


def new_id() -> str:
    """A random URL-safe id (128 bits from the OS CSPRNG, 22 characters) that starts with a
    letter or digit: an id starting with "-" would read as an option on a command line
    (`relay meetings end ID`)."""
    while True:
        candidate = secrets.token_urlsafe(16)
        if candidate[0].isalnum():
            return candidate


def encode_features(features: Iterable[str]) -> str:
    return json.dumps(list(features))


def decode_features(text: str) -> tuple[str, ...]:
    return tuple(str(f) for f in json.loads(text))


def merge_features(stored: str, added: Iterable[str]) -> str:
    """The stored JSON feature list with `added` joined to it, sorted, as JSON."""
    return encode_features(sorted(set(decode_features(stored)) | set(added)))


NO_STREAMS = "[]"


def encode_streams(streams: Iterable[Stream]) -> str:
    """A participant's streams as `participants.streams` holds them: a JSON array of
    {ssrc, kind, pt, codec}."""
    return json.dumps(
        [{"ssrc": s.ssrc, "kind": s.kind, "pt": s.pt, "codec": s.codec} for s in streams]
    )


def decode_streams(text: str) -> tuple[Stream, ...]:
    if text == NO_STREAMS:  # most participants (a webinar's audience) send nothing
        return ()
    return tuple(Stream(**item) for item in json.loads(text))


def encode_address(address: Address | None) -> str | None:
    """A listener's address as `participants.receive_at` holds it: "ip:port" ("[v6]:port")."""
    return None if address is None else str(address)


def decode_address(text: str | None) -> Address | None:
    return None if text is None else Address.parse(text)
