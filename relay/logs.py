"""One log format for every process `relay serve` starts, and one knob for its level:
RELAY_LOG_LEVEL (DEBUG, INFO, WARNING, ERROR; default INFO), which child processes inherit."""

from __future__ import annotations

import logging
import os

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_setup() -> None:
    level = os.environ.get("RELAY_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in LEVELS else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
