"""The simulation report: one self-contained HTML page with the outcome tables and the figures, written
atomically (a failure while rendering or writing leaves no file, or the previous one, behind)."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.report.simulation import SUMMARY_HEADERS, _summary_row, latency_cdf, simulation_report
from fleetwise.sim.core import SimConfig
from fleetwise.sim.policies import StaticSchedule
from fleetwise.sim.requests import SimRequests, named_class
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.setup import fleet_spec
from fleetwise.traffic.records import RequestTrace

N = 400


@pytest.fixture(scope="module")
def spec():
    return fleet_spec("llama-3.1-8b", "h100-sxm", 1, precision="fp8", clouds=["aws"])


def _requests(mix=None) -> SimRequests:
    rng = np.random.default_rng(7)
    trace = RequestTrace(np.sort(rng.uniform(0.0, 240.0, N)), rng.integers(100, 3000, N),
                         rng.integers(100, 2000, N))
    classes = (named_class("interactive", 1000, 50), named_class("batch", 1000, 50))
    return SimRequests.from_trace(trace, classes if mix else classes[:1], mix, seed=1)


@pytest.fixture(scope="module")
def results(spec):
    """Two runs of a spot + on-demand fleet losing its spot instance at 60 s: drained and requeued."""
    reqs = _requests()
    return [simulate_fleet(reqs, spec, StaticSchedule.fixed({"spot": 1, "on_demand": 1}, name=drain),
                           SimConfig(drain=drain, preemption_times_s=(60.0,)))
            for drain in ("drain", "requeue")]


@pytest.fixture(scope="module")
def classed(spec):
    """Two priority classes, no preemption."""
    return simulate_fleet(_requests(mix=(0.5, 0.5)), spec, StaticSchedule.fixed({"on_demand": 1}, name="classes"))


def _images(page: str) -> int:
    return len(re.findall(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', page))


def _table_rows(page: str, heading: str) -> int:
    section = page.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    table = section.split("</table>", 1)[0]
    return table.count("<tr>") - 1  # minus the header row


def test_the_runs_behind_the_report_lost_a_spot_instance(results):
    for r in results:
        assert r.requests == N and r.preemptions == 1
        assert r.completed + r.dropped + r.unfinished == N
    assert results[0].preemption_events[0]["kept"] + results[0].preemption_events[0]["migrated"] > 0
    assert results[1].requeued > 0


def test_report_has_the_summary_the_figures_and_the_preemptions(tmp_path, results):
    path = tmp_path / "sim.html"
    simulation_report(path, results, title="two drains", notes="spot lost at 60 s")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.endswith("</html>")
    assert "<h1>two drains</h1>" in page and "spot lost at 60 s" in page
    assert all(f"<th>{h}</th>" in page for h in SUMMARY_HEADERS)
    assert _table_rows(page, "Summary") == 2
    assert "<td>drain</td>" in page and "<td>requeue</td>" in page
    for heading in ("Fleet vs demand", "Latency", "Cost", "Spot preemptions"):
        assert f"<h2>{heading}</h2>" in page
    assert _images(page) == 4  # fleet + queue, latency CDFs, cost, preemptions
    assert _table_rows(page, "Spot preemptions") == 2  # one notice per run
    assert "By priority class" not in page  # one class only
    assert "http://" not in page and "https://" not in page  # self-contained
    assert [p.name for p in tmp_path.iterdir()] == ["sim.html"]


def test_no_preemption_section_without_notices_and_a_class_table_with_classes(tmp_path, classed):
    assert classed.preemptions == 0 and len(classed.by_class) == 2
    path = tmp_path / "classes.html"
    simulation_report(path, [classed])
    page = path.read_text(encoding="utf-8")
    assert "<h1>fleetwise simulate</h1>" in page
    assert "Spot preemptions" not in page
    assert _images(page) == 3
    assert _table_rows(page, "By priority class") == 2
    assert "<td>interactive</td>" in page and "<td>batch</td>" in page


def test_summary_row_matches_the_result_and_shows_undefined_values_as_dashes(results):
    r = results[0]
    row = _summary_row(r)
    assert len(row) == len(SUMMARY_HEADERS)
    assert row[:7] == [r.strategy, r.requests, r.completed, r.migrated, r.requeued, r.dropped, r.unfinished]
    assert row[8] == pytest.approx(r.ttft_ms["p95"])
    assert row[13] == pytest.approx(100 * r.slo_attainment)
    assert row[14] == pytest.approx(r.cost_usd)
    empty = dataclasses.replace(r, ttft_ms=dict.fromkeys(r.ttft_ms, math.nan), usd_per_1m_tokens=math.inf)
    row = _summary_row(empty)
    assert row[7:10] == ["-", "-", "-"] and row[15] == "-"


def test_cdf_counts_requests_never_completed_and_thins_long_inputs():
    x, y = latency_cdf(np.array([3.0, np.nan, 1.0, 2.0]), 4)
    assert x.tolist() == [1.0, 2.0, 3.0] and y.tolist() == [0.25, 0.5, 0.75]
    x, y = latency_cdf(np.arange(100_000, dtype=float), 100_000)
    assert len(x) == 2000 and x[0] == 0 and x[-1] == 99_999 and y[-1] == 1.0


def test_failure_while_rendering_keeps_the_previous_report(tmp_path, results, monkeypatch):
    from fleetwise.report import simulation as mod

    path = tmp_path / "sim.html"
    path.write_text("previous report", encoding="utf-8")
    calls = []

    def broken(fig):
        calls.append(fig)
        if len(calls) == 2:
            raise RuntimeError("renderer crashed")
        return mod.pyplot().close(fig) or b"\x89PNG"

    monkeypatch.setattr(mod, "figure_png", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        simulation_report(path, results)
    assert path.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["sim.html"]


class _HalfWritten:
    """A file handle that writes half of what it is given, then fails like a full disk."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("previous", [None, "previous report"])
def test_failure_mid_write_leaves_no_partial_file(tmp_path, results, monkeypatch, previous):
    from fleetwise import atomic

    real_fdopen = atomic.os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: _HalfWritten(real_fdopen(fd, *a, **k)))
    path = tmp_path / "sim.html"
    if previous:
        path.write_text(previous, encoding="utf-8")
    with pytest.raises(OSError, match="No space left"):
        simulation_report(path, results)
    monkeypatch.undo()
    if previous:  # the old report is untouched and no temporary file is left next to it
        assert path.read_text(encoding="utf-8") == previous
        assert [p.name for p in tmp_path.iterdir()] == ["sim.html"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_bad_calls_fail_before_any_rendering(tmp_path, results):
    with pytest.raises(ConfigError, match="no simulation results"):
        simulation_report(tmp_path / "empty.html", [])
    with pytest.raises(ConfigError, match="output directory does not exist"):
        simulation_report(tmp_path / "missing" / "sim.html", results)
    assert list(tmp_path.iterdir()) == []
