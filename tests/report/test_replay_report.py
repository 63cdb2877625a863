"""The replay report: one self-contained page from a ReplayResult made in the test (no server), with the
measured vs simulated table only when the summary carries a comparison."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fleetwise.replay.results import ReplayResult
from fleetwise.report.replay import comparison_rows, replay_report

N = 50


@pytest.fixture(scope="module")
def result() -> ReplayResult:
    rng = np.random.default_rng(3)
    arrival = np.sort(rng.uniform(0.0, 10.0, N))
    ok = np.arange(N) % 10 != 3
    ttft = np.where(ok, rng.uniform(0.02, 0.2, N), np.nan)
    tpot = np.where(ok, rng.uniform(0.005, 0.02, N), np.nan)
    out = np.full(N, 40)
    return ReplayResult(
        urls=("http://a:1", "http://b:2"), model="m", api="completions", stream=True, time_compress=1.0,
        arrival_s=arrival, sent_s=arrival + 0.001, input_tokens=np.full(N, 200), max_tokens=out,
        output_tokens=np.where(ok, out, 0), ttft_s=ttft, tpot_s=tpot, e2e_s=ttft + 39 * tpot,
        status=tuple("ok" if k else "http_500" for k in ok), url_index=(np.arange(N) % 2).astype(np.int16),
        itl_s=np.full(100, 0.01), wall_s=10.5, first_errors={"http_500": "boom"})


def _images(page: str) -> int:
    return len(re.findall(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', page))


def test_page_has_summary_failures_endpoints_and_two_figures(tmp_path, result):
    path = tmp_path / "replay.html"
    replay_report(path, result, source="trace.csv")
    page = path.read_text(encoding="utf-8")
    assert _images(page) == 2
    for heading in ("Summary", "Failures", "Endpoints", "Latency", "Rate"):
        assert f"<h2>{heading}</h2>" in page
    assert "Measured vs simulated" not in page and "trace.csv against http://a:1, http://b:2" in page
    assert "boom" in page


def test_comparison_rows_and_section(tmp_path, result):
    s = result.summary()
    s["simulated"] = {"ttft_ms": {"p50": 50.0, "p95": 100.0, "p99": 0.0},
                      "tpot_ms": {"p50": 10.0, "p95": 20.0, "p99": 20.0}}
    s["gap"] = {"ttft_ms": {"p50": 0.5, "p95": -0.1, "p99": None}, "tpot_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0}}
    rows = comparison_rows(s)
    assert len(rows) == 6 and rows[0][:2] == ["TTFT ms", "p50"] and rows[3][0] == "TPOT ms"
    assert rows[0][2] == pytest.approx(s["ttft_ms"]["p50"]) and rows[0][3:] == [50.0, 50.0]
    assert rows[2][4] == "-"
    path = tmp_path / "compared.html"
    replay_report(path, result, s)
    assert "<h2>Measured vs simulated</h2>" in path.read_text(encoding="utf-8")
    assert math.isfinite(rows[1][4])
