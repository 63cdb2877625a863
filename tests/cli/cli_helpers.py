"""Small helpers shared by the CLI test modules."""

from __future__ import annotations

import json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def as_json(res) -> dict:
    """The JSON a successful command printed (and proof it printed no traceback)."""
    assert res.code == 0, res.err
    assert "Traceback" not in res.err
    return json.loads(res.out)


def flat(text: str) -> str:
    """Rich may wrap long lines: compare with whitespace collapsed."""
    return " ".join(text.split())
