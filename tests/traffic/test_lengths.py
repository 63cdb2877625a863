"""Token-length distributions: lognormal by mean and p95, fixed lengths, fitting, and empirical pairs."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.traffic import EmpiricalLengths, LengthDist
from fleetwise.traffic.lengths import Z95, sample_lengths


@pytest.mark.parametrize(("mean", "p95"), [(500.0, 1500.0), (211.0, 451.0), (1155.0, 4083.0)])
def test_lognormal_parameters_match_mean_and_p95(mean, p95):
    mu, sigma = LengthDist(mean, p95).lognormal
    assert np.exp(mu + sigma**2 / 2) == pytest.approx(mean, rel=1e-9)
    assert np.exp(mu + Z95 * sigma) == pytest.approx(p95, rel=1e-9)


def test_sample_matches_mean_and_p95():
    x = LengthDist(500, 1500).sample(200_000, np.random.default_rng(0))
    assert x.dtype == np.int64 and x.min() >= 1
    assert x.mean() == pytest.approx(500, rel=0.02)
    assert np.percentile(x, 95) == pytest.approx(1500, rel=0.02)


@pytest.mark.parametrize("p95", [None, 300.0, 200.0])
def test_fixed_length_when_no_spread(p95):
    d = LengthDist(300.0, p95)
    assert d.lognormal is None
    assert set(d.sample(100, np.random.default_rng(0)).tolist()) == {300}


def test_max_tokens_clips():
    x = LengthDist(1155, 4083, 16384).sample(100_000, np.random.default_rng(1))
    assert x.max() == 16384
    assert x.mean() == pytest.approx(1155, rel=0.05)


@pytest.mark.parametrize(("mean", "p95"), [(0.5, None), (100.0, 0.5)])
def test_invalid_lengths(mean, p95):
    with pytest.raises(ConfigError, match="must be >= 1"):
        LengthDist(mean, p95)


def test_fit_recovers_mean_and_p95():
    data = np.random.default_rng(2).lognormal(6.0, 0.7, 50_000)
    d = LengthDist.fit(data, max_tokens=8192)
    assert d.mean == pytest.approx(data.mean()) and d.p95 == pytest.approx(np.percentile(data, 95))
    assert d.max_tokens == 8192
    with pytest.raises(ConfigError, match="empty"):
        LengthDist.fit(np.empty(0))


def test_empirical_lengths_keep_pairs():
    e = EmpiricalLengths(np.array([10, 20, 30]), np.array([1, 2, 3]))
    isl, osl = sample_lengths(1000, e, np.random.default_rng(0))
    assert np.array_equal(osl * 10, isl)  # sampled as pairs
    assert set(isl.tolist()) == {10, 20, 30}
    with pytest.raises(ConfigError, match="non-empty"):
        EmpiricalLengths(np.empty(0), np.empty(0))
    with pytest.raises(ConfigError, match="equal"):
        EmpiricalLengths(np.array([1, 2]), np.array([1]))


def test_sample_lengths_from_two_dists():
    isl, osl = sample_lengths(50, (LengthDist(7), LengthDist(3)), np.random.default_rng(0))
    assert isl.tolist() == [7] * 50 and osl.tolist() == [3] * 50
