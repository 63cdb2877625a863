"""Token-length distributions: lognormal by mean and p95, or empirical (resampled from a trace)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetwise.errors import ConfigError

Z95 = 1.6448536  # standard-normal 95th percentile


@dataclass(frozen=True)
class LengthDist:
    """Token-length distribution: lognormal with a given mean and 95th percentile (fixed if equal)."""

    mean: float
    p95: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.mean >= 1:
            raise ConfigError(f"mean token length must be >= 1 (got {self.mean:g})")
        if self.p95 is not None and not self.p95 >= 1:
            raise ConfigError(f"p95 token length must be >= 1 (got {self.p95:g})")

    @property
    def lognormal(self) -> tuple[float, float] | None:
        """(mu, sigma) of the underlying normal, or None for a fixed length."""
        if self.p95 is None or self.p95 <= self.mean:
            return None
        # E[X] = mean and q95 = p95: solve exp(mu + z s) = p95 with mu = ln(mean) - s^2/2 (smaller root).
        a = np.log(self.p95) - np.log(self.mean)
        s = Z95 - np.sqrt(max(Z95 * Z95 - 2 * a, 0.0))
        return float(np.log(self.mean) - s * s / 2), float(s)

    def sample(self, n: int, rng: np.random.Generator, stratified: bool = False) -> np.ndarray:
        """``n`` lengths; ``stratified``: one draw from each of ``n`` equal-probability slices of the
        distribution, in random order (Latin hypercube: the sample's mean and tail match the distribution's
        far more closely than ``n`` independent draws do, so a simulation's percentiles vary less by seed)."""
        params = self.lognormal
        if params is None:
            out = np.full(n, round(self.mean))
        elif stratified:
            from scipy.special import ndtri

            out = np.round(np.exp(params[0] + params[1] * ndtri(_strata(n, rng))))
        else:
            out = np.round(rng.lognormal(*params, n))
        return np.clip(out, 1, self.max_tokens or None).astype(np.int64)

    @classmethod
    def fit(cls, tokens: np.ndarray, max_tokens: int | None = None) -> LengthDist:
        """Lognormal matched to a sample's mean and 95th percentile (the two numbers a planner quotes)."""
        tokens = np.asarray(tokens, dtype=np.float64)
        if tokens.size == 0:
            raise ConfigError("cannot fit a length distribution to an empty sample")
        mean = max(float(tokens.mean()), 1.0)
        return cls(mean, max(float(np.percentile(tokens, 95)), 1.0), max_tokens)


@dataclass(frozen=True)
class EmpiricalLengths:
    """Resample (input, output) pairs from a trace, keeping their correlation."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __post_init__(self) -> None:
        if len(self.input_tokens) == 0 or len(self.input_tokens) != len(self.output_tokens):
            raise ConfigError("empirical lengths need equal, non-empty input and output arrays")

    def sample_pairs(self, n: int, rng: np.random.Generator, stratified: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs drawn with replacement; ``stratified``: one from each of ``n`` equal slices of the pairs
        ordered by total length, in random order (see :meth:`LengthDist.sample`)."""
        if stratified:
            order = np.argsort(self.input_tokens + self.output_tokens, kind="stable")
            idx = order[np.minimum((_strata(n, rng) * len(order)).astype(np.int64), len(order) - 1)]
        else:
            idx = rng.integers(0, len(self.input_tokens), n)
        return self.input_tokens[idx].astype(np.int64), self.output_tokens[idx].astype(np.int64)


def _strata(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniforms in (0, 1), one in each slice [k/n, (k+1)/n), in random order."""
    u = (rng.permutation(n) + rng.random(n)) / n
    return np.clip(u, 1e-12, 1 - 1e-12)


# Mean / p95 token lengths of the Azure LLM conversation trace 2023 (azure_llm_conv_2023.csv, 19,366 requests;
# AzurePublicDataset, CC-BY-4.0), measured 2026-11-23: the built-in chat workload of plan and synth.
CHAT_INPUT = LengthDist(1155, 4083, 16384)
CHAT_OUTPUT = LengthDist(211, 451, 2048)


def sample_lengths(
    n: int, lengths: EmpiricalLengths | tuple[LengthDist, LengthDist], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(input, output) token arrays of size n from empirical pairs or two independent lognormals."""
    if isinstance(lengths, EmpiricalLengths):
        return lengths.sample_pairs(n, rng)
    isl, osl = lengths
    return isl.sample(n, rng), osl.sample(n, rng)
