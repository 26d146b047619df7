"""The checks every value passes before it reaches SQL, and the encodings of a few columns.

The store validates each argument here, before any statement runs, so that SQLite (whose
columns take any type) and PostgreSQL (whose driver refuses what it cannot encode) accept and
refuse exactly the same things, and a refusal is an `InvalidValue` that names the argument
(never a driver error, never the refused value itself). The checks return the value as
stored: a float for a time, bytes for a memoryview.

Also here: new ids (`new_id`), the JSON list of feature names that `meetings.features`
and `usage_records.features` hold, and the text of a participant's typed columns: its
streams a JSON array, its listening address "ip:port".
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence

from control.store.errors import InvalidValue
from relay.vocabulary import Address
from relay.wire import Stream

__all__ = [
    "FEATURE_NAME",
    "check_bool",
    "check_bytes",
    "check_choice",
    "check_digest",
    "check_feature_names",
    "check_int",
    "check_json",
    "check_json_object",
    "check_number",
    "check_page",
    "check_text",
    "check_time",
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


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidValue(f"{name} must be one of {', '.join(choices)}")
    return value


def check_text(name: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string, not {type(value).__name__}")
    if not empty and not value:
        raise InvalidValue(f"{name} must not be empty")
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"{name} must be true or false, not {type(value).__name__}")
    return value


def check_int(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise InvalidValue(f"{name} must be at least {minimum}")
    if value >= 1 << 63:
        raise InvalidValue(f"{name} does not fit in 64 bits")
    return value


def check_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{name} must be seconds since the epoch, not {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidValue(f"{name} must be a finite number of seconds")
    return value


def check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidValue(f"{name} must be a finite number")
    if number < 0:
        raise InvalidValue(f"{name} must not be negative")
    return number


def check_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidValue(f"{name} must be bytes, not {type(value).__name__}")
    if not value:
        raise InvalidValue(f"{name} must not be empty")
    return bytes(value)


def check_json(name: str, value: object, *, array: bool = False) -> str:
    """A JSON text (with `array`, one whose top level is an array), returned as given."""
    text = check_text(name, value)
    try:
        decoded = json.loads(text)
    except ValueError:
        raise InvalidValue(f"{name} is not valid JSON") from None
    if array and not isinstance(decoded, list):
        raise InvalidValue(f"{name} must be a JSON array")
    return text


def check_json_object(name: str, value: object) -> str:
    """A JSON text whose top level is an object, returned as given."""
    text = check_json(name, value)
    if not isinstance(json.loads(text), dict):
        raise InvalidValue(f"{name} must be a JSON object")
    return text


def check_page(limit: int | None, offset: int) -> tuple[int | None, int]:
    if limit is not None:
        check_int("limit", limit)
    check_int("offset", offset)
    return limit, offset


def encode_features(features: Sequence[str]) -> str:
    if isinstance(features, str):
        raise InvalidValue("features must be a list of names, not a string")
    for feature in features:
        check_text("a feature", feature)
    return json.dumps(list(features))


def decode_features(text: str) -> tuple[str, ...]:
    return tuple(str(f) for f in json.loads(text))


FEATURE_NAME = re.compile(r"[a-z_]{1,32}")
"""What a feature name a meeting records may be: 1 to 32 of a-z and _."""


def check_feature_names(name: str, value: object) -> tuple[str, ...]:
    """A list of feature names (FEATURE_NAME each), as a tuple."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidValue(f"{name} must be a list of feature names")
    for feature in value:
        if not isinstance(feature, str) or not FEATURE_NAME.fullmatch(feature):
            raise InvalidValue(f"{name}: a feature name is 1 to 32 characters of a-z and _")
    return tuple(value)


def merge_features(stored: str, added: Sequence[str]) -> str:
    """The stored JSON feature list with `added` joined to it, sorted, as JSON."""
    return encode_features(sorted(set(decode_features(stored)) | set(added)))


def check_digest(name: str, value: object) -> str:
    """A digest as the callers make them: 1 to 128 characters of ASCII letters and digits (so
    that it compares in constant time with `hmac.compare_digest`)."""
    text = check_text(name, value)
    if len(text) > 128 or not text.isascii() or not text.isalnum():
        raise InvalidValue(f"{name} must be a digest: letters and digits")
    return text


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
