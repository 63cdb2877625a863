"""Durations as people write them: '10min', '1h', '5m', '30s', '1d', '2w' or plain seconds."""

from __future__ import annotations

import re

from fleetwise.errors import ConfigError

UNITS_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86_400, "day": 86_400,
           "w": 604_800, "week": 604_800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*?)s?\s*$")


def parse_duration(text: str | float, what: str = "duration") -> float:
    """Seconds in ``text``; a bare number is seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _PATTERN.match(str(text).lower())
        unit = m.group(2) if m else None
        if m and unit == "" and str(text).strip().lower().endswith("s"):
            unit = "s"
        if not m or (unit and unit not in UNITS_S):
            raise ConfigError(f"cannot read {what} '{text}' (examples: 30s, 5min, 1h, 1d, 2w)")
        seconds = float(m.group(1)) * UNITS_S.get(unit or "s", 1)
    if seconds <= 0:
        raise ConfigError(f"{what} must be positive (got '{text}')")
    return seconds
