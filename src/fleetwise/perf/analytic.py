"""Closed-form steady state of a continuous-batching replica, for screening many configurations fast.

At arrival rate ``lam`` (per tensor-parallel group) with mean lengths ``isl``/``osl``, Little's law
gives the decoding batch ``B = lam * osl * tau`` and prompt tokens per step ``P = lam * isl * tau``,
where ``tau`` is the mean step time, itself ``step_time(P, B, ...)``. The fixed point is closed-form
for dense models (see ``_fixed_point``) and found by damped iteration for mixture-of-experts ones,
vectorized over a grid of rates. The load is infeasible when the batch would
exceed the batch cap or the KV cache, or the token budget per step.

TTFT at the 95th percentile is estimated as frontend latency + waiting for the step in progress +
prefill of the prompts that arrive in one step window (Poisson 95th percentile) sharing the token
budget. This is a screen: :mod:`fleetwise.plan` re-checks the best candidates with the event
simulation in :mod:`fleetwise.perf.serving`, whose numbers are the ones reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetwise.perf.replica import Replica
from fleetwise.perf.steps import StepModel, prefill_pairs, step_time

_ITERATIONS = 60
MAX_STEP_S = 60.0  # a step time this long means the load diverges


@dataclass(frozen=True)
class SteadyState:
    """Per-rate steady-state estimates (arrays aligned with ``rates_rps``, whole replica)."""

    rates_rps: np.ndarray
    step_s: np.ndarray
    batch: np.ndarray
    ttft_q_ms: np.ndarray  # TTFT at the requested quantile (steady_state's ``quantile``; 0.95 by default)
    tpot_q_ms: np.ndarray
    feasible: np.ndarray


def batch_cap(replica: Replica, isl: float, osl: float) -> int:
    """Most sequences of mean length that can run at once: batch cap or KV capacity."""
    return min(replica.max_batch, replica.memory.max_sequences(int(isl + osl), replica.profile.kv_block_tokens))


def _step_at_load(replica: Replica, lam, tau, isl: float, osl: float):
    """Step time when each step of length ``tau`` carries the decode batch and prompts Little's law implies."""
    batch = lam * osl * tau
    pf_seqs = lam * tau
    return step_time(replica, lam * isl * tau, pf_seqs * prefill_pairs(isl, 0), batch, batch * (isl + osl / 2.0),
                     pf_seqs)


EXACT_POISSON_MEAN = 200.0  # above this mean the Poisson quantile is taken from its normal approximation


def poisson_quantile(q: float, mean: np.ndarray) -> np.ndarray:
    """The smallest k with P(Poisson(mean) <= k) >= q, elementwise (``scipy.stats.poisson.ppf``, without the
    ~1 s import of ``scipy.stats``): exact from the CDF (``scipy.special.pdtr``) for means up to
    ``EXACT_POISSON_MEAN``, the normal approximation with Cornish-Fisher skew correction above (off by at most
    one arrival there, where a step already carries hundreds)."""
    from scipy.special import ndtri, pdtr

    mean = np.asarray(mean, dtype=float)
    out = np.zeros_like(mean)
    small = mean <= EXACT_POISSON_MEAN
    if small.any():
        m = mean[small]
        ks = np.arange(int(np.ceil(m.max() + 12.0 * np.sqrt(m.max()) + 12.0)) + 1)
        cdf = pdtr(ks[None, :], m[:, None])
        out[small] = np.argmax(cdf >= q * (1 - 1e-12), axis=1)
    if (~small).any():
        m, z = mean[~small], float(ndtri(q))
        out[~small] = np.ceil(m + np.sqrt(m) * z + (z * z - 1.0) / 6.0 - 0.5)
    return out


def _fixed_point(replica: Replica, lam: np.ndarray, isl: float, osl: float) -> np.ndarray:
    """The step time tau with tau = step time at the load Little's law gives it (at most ``MAX_STEP_S``).

    For a dense model every term of the step time is proportional to tau but the weight read, so the step time
    is max(b tau, W) + d tau + F - convex and piecewise linear - and its least fixed point is closed-form: the
    larger of F / (1 - b - d) and (W + F) / (1 - d) (a branch with slope >= 1 has none: the load diverges).
    A mixture-of-experts model reads a share of its experts that grows with the tokens per step, not linearly,
    so it is solved by damped iteration from below.
    """
    sm = StepModel(replica)  # the step time's coefficients
    if sm.w_expert:
        tau = np.full_like(lam, sm(0, 0.0, 1, isl + osl / 2.0))
        for _ in range(_ITERATIONS):
            tau = np.minimum(0.5 * tau + 0.5 * _step_at_load(replica, lam, tau, isl, osl), MAX_STEP_S)
        return tau
    tokens, seqs = lam * (isl + osl), lam * (osl + 1.0)  # per second of step time
    b = sm.c_tok * tokens + sm.c_head * seqs
    d = sm.c_pair * lam * prefill_pairs(isl, 0) + sm.ctx_coef * lam * osl * (isl + osl / 2.0) \
        + sm.ar_tok * tokens + sm.c_seq * seqs
    f = sm.ar_fixed + sm.fixed
    with np.errstate(divide="ignore"):
        compute_bound = np.where(b + d < 1.0, f / (1.0 - b - d), np.inf)
        memory_bound = np.where(d < 1.0, (sm.w_dense + f) / (1.0 - d), np.inf)
    return np.minimum(np.maximum(compute_bound, memory_bound), MAX_STEP_S)


def steady_state(
    replica: Replica, isl: float, osl: float, rates_rps: np.ndarray, quantile: float = 0.95
) -> SteadyState:
    """Steady-state step time, batch and latency at a percentile, at each rate of ``rates_rps``."""
    lam = np.asarray(rates_rps, dtype=float) / replica.dp
    ctx_per_seq = isl + osl / 2.0
    tau = _fixed_point(replica, lam, isl, osl)
    batch = lam * osl * tau
    budget = replica.max_num_tokens
    feasible = (batch <= batch_cap(replica, isl, osl)) & (lam * (isl + osl) * tau <= budget)
    # Self-consistency: the fixed point must hold (diverging loads don't converge).
    feasible &= np.abs(_step_at_load(replica, lam, tau, isl, osl) - tau) <= 0.05 * tau
    arrivals_95 = poisson_quantile(quantile, lam * tau) + 1.0
    prompt_tokens = arrivals_95 * isl
    room = np.maximum(budget - batch, 1.0)
    steps = np.ceil(prompt_tokens / room)
    chunk = np.minimum(prompt_tokens, room)
    t_chunk = step_time(replica, chunk, arrivals_95 * prefill_pairs(isl, 0) / steps, batch, batch * ctx_per_seq, arrivals_95)
    ttft = replica.profile.frontend_latency_ms * 1e-3 + tau + steps * t_chunk
    # A request's TPOT averages its decode steps, of which a share carry someone's prompt chunk.
    tpot = tau + (t_chunk - tau) * np.minimum(1.0, lam * tau) * 0.5
    return SteadyState(
        rates_rps=np.asarray(rates_rps, dtype=float),
        step_s=tau,
        batch=batch,
        ttft_q_ms=ttft * 1e3,
        tpot_q_ms=tpot * 1e3,
        feasible=feasible,
    )


def max_rate(replica: Replica, isl: float, osl: float) -> float:
    """Upper bound on the request rate the replica sustains (offline steady state), requests/s."""
    cap = batch_cap(replica, isl, osl)
    if cap < 1:
        return 0.0
    per_step_tokens = min(replica.max_num_tokens, cap * (1 + isl / osl))
    b = per_step_tokens * osl / (isl + osl)
    tau = float(step_time(replica, b * isl / osl, b / osl * prefill_pairs(isl, 0), b, b * (isl + osl / 2), b / osl))
    return b / osl / tau * replica.dp
