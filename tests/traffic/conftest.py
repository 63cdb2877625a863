"""Shared fixtures of the traffic tests: writing small input files and building traces by hand.

Every file is made inside ``tmp_path``; the real traces in ../shared/data/traces (tests/shared_data.py) are only read by the
tests that say so, and those are skipped when the data is absent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fleetwise.traffic import RequestTrace


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(name, text_or_bytes) -> path; text is written byte for byte (no newline translation)."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return _write


@pytest.fixture
def poisson_trace() -> Callable[..., RequestTrace]:
    """poisson_trace(rate_rps, duration_s, seed=0): homogeneous Poisson arrivals from t=0, lognormal lengths."""

    def make(rate_rps: float, duration_s: float, seed: int = 0) -> RequestTrace:
        rng = np.random.default_rng(seed)
        n = rng.poisson(rate_rps * duration_s)
        t = np.sort(rng.uniform(0.0, duration_s, n))
        isl = np.maximum(np.round(rng.lognormal(6.0, 0.8, n)), 1).astype(np.int64)
        osl = np.maximum(np.round(rng.lognormal(4.5, 0.6, n)), 1).astype(np.int64)
        return RequestTrace(t, isl, osl)

    return make
