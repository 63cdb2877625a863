"""Request-length distributions of benchmark datasets: ShareGPT, as vLLM's and SGLang's benchmarks sample it.

``benchmark_serving.py --dataset-name sharegpt`` (vLLM; SGLang's ``bench_serving`` copies it) takes the first
turn of each ShareGPT_V3_unfiltered_cleaned_split conversation and keeps it only if the prompt has 4 to 1,024
tokens, the completion at least 4, and prompt + completion at most 2,048 (vllm-project/vllm
``benchmarks/benchmark_serving.py``, ``sample_sharegpt_requests``). The lengths here follow that filter:
log-normal draws clipped to it, scaled so their means are the run's mean lengths.

The means a run states are the numbers to use (its tokenizer and ``--ignore-eos`` change them: dstack's
Llama-3.1 runs without ``--ignore-eos`` average 215/122, simon-mo's DeepSeek-R1 runs with it 206/215). With no
stated means, :data:`SHAREGPT_MEANS` is the dataset's own (``--ignore-eos``) pair. The log-normal spread
(:data:`SHAREGPT_LOG_SIGMA`) is an assumption: no public table of the filtered sample's spread was found; mean
TTFT, ITL and throughput depend on it far less than on the means.
"""

from __future__ import annotations

import numpy as np

SHAREGPT_MEANS = (205.9, 215.3)
"""Mean input/output tokens of 500 ShareGPT prompts sent with --ignore-eos: simon-mo/vLLM-Benchmark
saved-results/v0.8.4/deepseek-r1 (vllm-sharegpt-ep.json, 2025-04-18), via shared/data/perf/measured_engines.csv."""
SHAREGPT_LOG_SIGMA = 1.0
"""Standard deviation of log(length) of the ShareGPT draws (an assumption; see the module docstring)."""
MIN_TOKENS, MAX_PROMPT, MAX_TOTAL = 4, 1024, 2048  # vLLM's sample_sharegpt_requests filter


def _scaled(z: np.ndarray, mean: float, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """exp(mu + sigma z) clipped to [low, high], with mu set (by bisection) so the clipped mean is ``mean``."""
    lo, hi = -5.0, 12.0
    for _ in range(50):
        mu = (lo + hi) / 2.0
        if np.clip(np.exp(mu + SHAREGPT_LOG_SIGMA * z), low, high).mean() < mean:
            lo = mu
        else:
            hi = mu
    return np.clip(np.exp((lo + hi) / 2.0 + SHAREGPT_LOG_SIGMA * z), low, high)


def sharegpt_lengths(n: int, mean_isl: float, mean_osl: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Input and output lengths of ``n`` ShareGPT requests with the given means (within vLLM's filter).

    Means outside what the filter allows are clipped to it (at most 1,024 input and 2,048 total tokens).
    """
    rng = np.random.default_rng(seed)
    z_in, z_out = rng.standard_normal(n), rng.standard_normal(n)
    isl = np.rint(_scaled(z_in, min(mean_isl, MAX_PROMPT), MIN_TOKENS, MAX_PROMPT))
    osl = np.rint(_scaled(z_out, min(mean_osl, MAX_TOTAL - MIN_TOKENS), MIN_TOKENS, MAX_TOTAL - isl))
    return isl.astype(np.int64), osl.astype(np.int64)
