"""Requests for the simulator: from a trace, drawn into priority classes; the named classes' targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.sim.requests import NAMED_CLASSES, SimRequests, named_class
from fleetwise.traffic.records import RequestTrace

from .helpers import TWO_CLASSES


def _trace(n: int = 1000, start: float = 1_700_000_000.0) -> RequestTrace:
    rng = np.random.default_rng(0)
    t = start + np.sort(rng.uniform(0, 600, n))
    isl = rng.integers(0, 4000, n)
    osl = rng.integers(0, 800, n)
    isl[0], osl[1] = 0, 0
    return RequestTrace(t, isl, osl)


def test_from_trace_shifts_times_and_keeps_lengths():
    trace = _trace()
    reqs = SimRequests.from_trace(trace, TWO_CLASSES)
    assert len(reqs) == len(trace)
    assert reqs.arrival_s[0] == 0.0 and np.all(np.diff(reqs.arrival_s) >= 0)
    np.testing.assert_allclose(reqs.arrival_s, trace.arrival_s - trace.arrival_s[0])
    assert np.array_equal(reqs.isl, np.maximum(trace.input_tokens, 1))  # zero-token prompts become one token
    assert np.array_equal(reqs.osl, np.maximum(trace.output_tokens, 1))
    assert np.all(reqs.cls == 0)  # no mix: everything in the first class
    assert reqs.classes == TWO_CLASSES


def test_class_mix_is_drawn_with_the_given_shares_and_seed():
    trace = _trace(20_000)
    a = SimRequests.from_trace(trace, TWO_CLASSES, (0.3, 0.7), seed=1)
    b = SimRequests.from_trace(trace, TWO_CLASSES, (0.3, 0.7), seed=1)
    c = SimRequests.from_trace(trace, TWO_CLASSES, (0.3, 0.7), seed=2)
    assert np.array_equal(a.cls, b.cls) and not np.array_equal(a.cls, c.cls)
    assert np.mean(a.cls == 0) == pytest.approx(0.3, abs=0.015)
    only_batch = SimRequests.from_trace(trace, TWO_CLASSES, (0.0, 1.0))
    assert np.all(only_batch.cls == 1)


@pytest.mark.parametrize("mix", [(0.5,), (0.5, 0.6), (-0.1, 1.1), (0.5, 0.5, 0.0)])
def test_bad_mix_is_rejected(mix):
    with pytest.raises(ConfigError, match="class shares"):
        SimRequests.from_trace(_trace(10), TWO_CLASSES, mix)


def test_empty_trace_and_no_classes_are_rejected():
    empty = RequestTrace(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    with pytest.raises(ConfigError, match="no requests"):
        SimRequests.from_trace(empty, TWO_CLASSES)
    with pytest.raises(ConfigError, match="at least one priority class"):
        SimRequests.from_trace(_trace(10), ())


def test_named_classes():
    assert NAMED_CLASSES == ("realtime", "interactive", "batch", "background")
    rt, it, bt, bg = (named_class(name, 800.0, 40.0) for name in NAMED_CLASSES)
    assert (rt.ttft_ms, rt.tpot_ms) == (400.0, 40.0)
    assert (it.ttft_ms, it.tpot_ms) == (800.0, 40.0)
    assert bt.ttft_ms == 3_600_000.0 and math.isinf(bt.tpot_ms)
    assert math.isinf(bg.ttft_ms) and math.isinf(bg.tpot_ms)
    assert all(c.max_wait_s is None for c in (rt, it, bt, bg))
    with pytest.raises(ConfigError, match="unknown priority class 'urgent'"):
        named_class("urgent", 800.0, 40.0)
