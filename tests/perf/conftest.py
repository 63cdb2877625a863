"""Shared fixtures of the perf tests: the catalog and a pinned engine profile.

Hand-computed numbers depend on the efficiency factors, so most tests build replicas with
``TEST_PROFILE`` (every value spelled out) rather than the shipped trtllm profile, which the
calibrator rewrites. Fixtures are session-scoped so hypothesis tests can use them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetwise.catalog import Catalog, load_catalog
from fleetwise.perf.profile import EngineProfile
from fleetwise.perf.replica import Replica, build_replica

TEST_PROFILE = EngineProfile(
    name="test",
    gemm_compute_eff=0.6,
    gemm_bw_eff=0.8,
    attn_compute_eff=0.4,
    attn_bw_eff=0.7,
    link_eff=0.7,
    allreduce_latency_us=10.0,
    step_overhead_ms=2.0,
    per_seq_overhead_us=5.0,
    frontend_latency_ms=5.0,
    max_batch=2048,
    max_num_tokens=8192,
    kv_mem_fraction=0.9,
    workspace_gib=3.0,
    kv_block_tokens=64,
    source="pinned test profile",
)


@pytest.fixture(scope="session")
def cat() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def profile() -> EngineProfile:
    return TEST_PROFILE


@pytest.fixture(scope="session")
def make_replica(cat: Catalog) -> Callable[..., Replica]:
    """make_replica(model, gpu, num_gpus=1, tp=None, precision='bf16', profile=TEST_PROFILE, **kw)."""

    def make(
        model: str,
        gpu: str,
        num_gpus: int = 1,
        tp: int | None = None,
        precision: str = "bf16",
        profile: EngineProfile = TEST_PROFILE,
        **kwargs,
    ) -> Replica:
        return build_replica(
            cat.model(model), cat.gpu(gpu), num_gpus, tp or num_gpus, cat.precision(precision), profile,
            **kwargs,
        )

    return make
