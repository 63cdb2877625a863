"""Time of one engine iteration from FLOPs and bytes moved, with the engine's efficiency factors.

One iteration (step) of a continuous-batching engine runs ``prefill_tokens`` tokens of prompt
chunks and one token for each of ``decode_seqs`` decoding sequences. Its time is the sum of

* the GEMMs of the transformer body and LM head: a roofline of FLOPs against compute and of
  weight bytes against HBM bandwidth (MoE reads only the experts some token was routed to);
* prefill attention (compute-bound, FLOPs proportional to query x context token pairs) and decode
  attention (a roofline of KV-cache bytes against bandwidth and FLOPs against compute);
* two ring all-reduces per layer under tensor parallelism (latency + 2(t-1)/t of the activations
  over the interconnect, NVLink or PCIe);
* a fixed per-step and a per-sequence overhead.

Every function takes NumPy arrays (or scalars) and broadcasts, so thousands of configurations or
steps are timed in one call.
"""

from __future__ import annotations

import math

import numpy as np

from fleetwise.perf.replica import Replica


def experts_touched_fraction(replica: Replica, tokens: np.ndarray | float) -> np.ndarray | float:
    """Expected share of routed experts at least one of ``tokens`` tokens is sent to (top-k routing)."""
    if not replica.num_experts:
        return 0.0
    miss = 1.0 - replica.experts_per_token / replica.num_experts
    return 1.0 - np.power(miss, tokens)


def gemm_time(replica: Replica, tokens, lm_head_tokens):
    """Seconds for the transformer-body and LM-head matmuls of one step."""
    p = replica.profile
    flops = replica.linear_flops_per_token * tokens + replica.lm_head_flops_per_token * lm_head_tokens
    weight_bytes = replica.dense_weight_bytes + replica.expert_weight_bytes * experts_touched_fraction(
        replica, tokens
    )
    t_compute = flops / (replica.gemm_flops_per_s * p.gemm_compute_eff)
    t_memory = weight_bytes / (replica.gpu.hbm_bytes_per_s * p.gemm_bw_eff)
    return np.maximum(t_compute, t_memory)


def attention_time(replica: Replica, prefill_pairs, decode_context):
    """Seconds of attention: prefill over query-context pairs, decode over the cached context."""
    p = replica.profile
    peak = replica.attn_flops_per_s
    t_prefill = replica.attn_flops_per_token_context * prefill_pairs / (peak * p.attn_compute_eff)
    kv_bytes = replica.memory.kv_bytes_per_token_per_gpu * decode_context
    t_decode_mem = kv_bytes / (replica.gpu.hbm_bytes_per_s * p.attn_bw_eff)
    t_decode_flops = replica.attn_flops_per_token_context * decode_context / (peak * p.attn_compute_eff)
    return t_prefill + np.maximum(t_decode_mem, t_decode_flops)


def allreduce_time(replica: Replica, tokens):
    """Seconds of the two ring all-reduces per layer that tensor parallelism adds."""
    tp = replica.tp
    if tp == 1:
        return 0.0 * tokens
    p = replica.profile
    size = replica.allreduce_bytes_per_token * tokens
    per_call = p.allreduce_latency_us * 1e-6 + 2.0 * (tp - 1) / tp * size / (
        replica.gpu.link_bytes_per_s_one_way * p.link_eff
    )
    return 2 * replica.model.num_layers * per_call


def step_time(replica: Replica, prefill_tokens, prefill_pairs, decode_seqs, decode_context, prefill_seqs=0):
    """Seconds for one engine iteration.

    Args:
        prefill_tokens: prompt tokens processed this step (all chunks together).
        prefill_pairs: sum over those tokens of the context each attends to (causal).
        decode_seqs: sequences generating one token this step.
        decode_context: total context length of the decoding sequences.
        prefill_seqs: sequences whose prompt chunk is in this step (for per-sequence overhead).
    """
    p = replica.profile
    tokens = prefill_tokens + decode_seqs
    seqs = decode_seqs + prefill_seqs
    return (
        gemm_time(replica, tokens, decode_seqs + prefill_seqs)
        + attention_time(replica, prefill_pairs, decode_context)
        + allreduce_time(replica, tokens)
        + p.step_overhead_ms * 1e-3
        + p.per_seq_overhead_us * 1e-6 * seqs
    )


def steps_to_cover(wait: float, dt0: float, slope: float) -> int:
    """Fewest steps of lengths dt0, dt0+slope, dt0+2*slope, ... whose sum reaches ``wait`` (at least 1): how
    far a run of decode steps, whose times grow linearly with the context, gets in a given time."""
    if wait <= 0 or dt0 <= 0:
        return 1
    if slope <= 1e-15:
        return max(1, math.ceil(wait / dt0))
    # k*dt0 + slope*k*(k-1)/2 >= wait  ->  smallest k above the positive root of the quadratic.
    a, b = slope / 2.0, dt0 - slope / 2.0
    k = math.ceil((-b + math.sqrt(b * b + 4 * a * wait)) / (2 * a))
    while k > 1 and (k - 1) * dt0 + slope * (k - 1) * (k - 2) / 2.0 >= wait:
        k -= 1
    return max(k, 1)


def prefill_pairs(chunk_tokens, context_before):
    """Causal query-context pairs of a prompt chunk that starts after ``context_before`` tokens."""
    return chunk_tokens * context_before + chunk_tokens * (chunk_tokens + 1) / 2.0


class StepModel:
    """:func:`step_time` for one replica reduced to a handful of coefficients, evaluated on Python floats.

    Event loops call the step time once per simulated iteration; NumPy's per-call overhead on scalars
    would dominate, so the same roofline is folded into constants here (tested equal to ``step_time``).
    Decode attention is linear in the context, so ``ctx_coef`` is also the growth of a decode step's
    time per extra token of context.
    """

    __slots__ = (
        "ar_fixed",
        "ar_tok",
        "c_head",
        "c_pair",
        "c_seq",
        "c_tok",
        "ctx_coef",
        "fixed",
        "miss",
        "w_dense",
        "w_expert",
    )

    def __init__(self, replica: Replica) -> None:
        p = replica.profile
        gemm = replica.gemm_flops_per_s * p.gemm_compute_eff
        self.c_tok = replica.linear_flops_per_token / gemm
        self.c_head = replica.lm_head_flops_per_token / gemm
        bw = replica.gpu.hbm_bytes_per_s * p.gemm_bw_eff
        self.w_dense = replica.dense_weight_bytes / bw
        self.w_expert = replica.expert_weight_bytes / bw if replica.num_experts else 0.0
        self.miss = 1.0 - replica.experts_per_token / replica.num_experts if replica.num_experts else 0.0
        attn = replica.attn_flops_per_s * p.attn_compute_eff
        self.c_pair = replica.attn_flops_per_token_context / attn
        kv_s = replica.memory.kv_bytes_per_token_per_gpu / (replica.gpu.hbm_bytes_per_s * p.attn_bw_eff)
        self.ctx_coef = max(kv_s, replica.attn_flops_per_token_context / attn)
        if replica.tp == 1:
            self.ar_fixed = self.ar_tok = 0.0
        else:
            calls = 2 * replica.model.num_layers
            self.ar_fixed = calls * p.allreduce_latency_us * 1e-6
            self.ar_tok = calls * 2.0 * (replica.tp - 1) / replica.tp * replica.allreduce_bytes_per_token / (
                replica.gpu.link_bytes_per_s_one_way * p.link_eff)
        self.fixed = p.step_overhead_ms * 1e-3
        self.c_seq = p.per_seq_overhead_us * 1e-6

    def __call__(self, prefill_tokens: int, pairs: float, decode_seqs: int, context: float,
                 prefill_seqs: int = 0) -> float:
        """Seconds for one iteration (same arguments as :func:`step_time`)."""
        tokens = prefill_tokens + decode_seqs
        seqs = decode_seqs + prefill_seqs
        compute = self.c_tok * tokens + self.c_head * seqs
        memory = self.w_dense + (self.w_expert * (1.0 - self.miss ** tokens) if self.w_expert else 0.0)
        return (max(compute, memory) + self.c_pair * pairs + self.ctx_coef * context
                + self.ar_fixed + self.ar_tok * tokens + self.fixed + self.c_seq * seqs)
