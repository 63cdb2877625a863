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


def offer_yaml(offer_id: str, on_demand: str = "10.0") -> str:
    """A one-offer catalog file (an 8x H100 AWS node) with the on-demand price given as YAML text."""
    return (
        "offers:\n"
        f"  - id: {offer_id}\n"
        "    cloud: aws\n"
        "    region: us-east-1\n"
        "    instance_type: p5.48xlarge\n"
        "    gpu: h100-sxm\n"
        "    gpu_count: 8\n"
        "    price_usd_per_hour:\n"
        f"      on_demand: {on_demand}\n"
        "    source: test\n"
        "    as_of: '2025-01-01'\n"
    )
