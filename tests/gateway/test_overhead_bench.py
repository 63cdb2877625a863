"""The gateway overhead benchmark runs end to end in its smoke mode (no LiteLLM) and prints its JSON figures.

It checks the harness (processes start and stop, every window is measured, the JSON has its keys), not the
figures themselves: those belong to ``python benchmarks/gateway_overhead.py``, not to a timed assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "gateway_overhead.py"
KEYS = ("fleetwise_p50_ms", "fleetwise_p99_ms", "litellm_p50_ms", "litellm_p99_ms", "fleetwise_max_rps",
        "litellm_max_rps")


@pytest.mark.skipif(not BENCH.exists(), reason="benchmarks/ is not part of this checkout")
def test_quick_run_without_litellm_prints_its_figures():
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--no-litellm", "--json"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    fig = json.loads(done.stdout)
    assert set(KEYS) <= set(fig)
    assert isinstance(fig["fleetwise_p50_ms"], float) and isinstance(fig["fleetwise_p99_ms"], float)
    assert fig["litellm_p50_ms"] is None and fig["litellm_max_rps"] is None
    details = fig["details"]
    assert [w["target"] for w in details["latency"]] == ["direct", "fleetwise"] * 2
    assert all(w["ok"] == w["sent"] > 0 for w in details["latency"])
    assert details["ramps"]["fleetwise"] and "LiteLLM skipped (--no-litellm)" in details["notes"]
