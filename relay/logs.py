"""One log format for every process `relay serve` starts, and two knobs, which child processes
inherit: RELAY_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO) and RELAY_LOG_FORMAT
(`text`, the default: "time level logger: message"; `json`: one JSON object per line with
`time` (UTC, ISO 8601, milliseconds), `level`, `logger`, `message`, `pid`, and `exception`
when there is a traceback). `relay serve` makes `json` its processes' default (cli/serve.py),
so a log collector can parse every line.

What is logged never carries personal data or a secret (README.md, "Attendee data (privacy)"): ids,
counts and reasons only; client addresses appear as keyed pseudonyms (control/api/).
"""

from __future__ import annotations

import json
import logging
import os
import time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter RELAY_LOG_FORMAT (or `fmt`) names; text for anything unknown."""
    chosen = (fmt if fmt is not None else os.environ.get("RELAY_LOG_FORMAT", "text")).lower()
    if chosen == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def log_setup() -> None:
    level = os.environ.get("RELAY_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter())
    logging.basicConfig(level=level if level in LEVELS else "INFO", handlers=[handler])
