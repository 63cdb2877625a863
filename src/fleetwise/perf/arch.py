"""Architecture arithmetic: parameter counts, FLOPs per token and KV-cache bytes of a transformer.

Conventions follow the Hugging Face implementations (Llama/Mistral/Qwen2 with gated SwiGLU MLPs,
Mixtral and DeepSeek-V3 MoE, DeepSeek MLA attention). Norm weights and Qwen2's QKV biases are
counted; rotary tables are not (they are buffers, not parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.catalog.records import Model


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts split the way memory and FLOPs need them."""

    embedding: int  # input embedding table
    lm_head: int  # output projection (0 when tied to the embedding)
    attention: int  # all layers
    dense_ffn: int  # all dense-FFN layers
    expert_ffn: int  # all routed experts of all MoE layers
    shared_ffn: int  # shared experts + routers of all MoE layers
    norms: int

    @property
    def total(self) -> int:
        return (
            self.embedding + self.lm_head + self.attention + self.dense_ffn
            + self.expert_ffn + self.shared_ffn + self.norms
        )


def _attention_params(m: Model) -> int:
    if m.mla is not None:
        a = m.mla
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            q = m.hidden_size * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * m.num_attention_heads * qk_head
        else:
            q = m.hidden_size * m.num_attention_heads * qk_head
        kv_a = m.hidden_size * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank
        kv_b = a.kv_lora_rank * m.num_attention_heads * (a.qk_nope_head_dim + a.v_head_dim)
        o = m.num_attention_heads * a.v_head_dim * m.hidden_size
        return q + kv_a + kv_b + o
    q = m.hidden_size * m.num_attention_heads * m.head_dim
    kv = 2 * m.hidden_size * m.num_kv_heads * m.head_dim
    o = m.num_attention_heads * m.head_dim * m.hidden_size
    bias = (m.num_attention_heads + 2 * m.num_kv_heads) * m.head_dim if _has_qkv_bias(m) else 0
    return q + kv + o + bias


def _has_qkv_bias(m: Model) -> bool:
    return m.id.startswith("qwen2")


def _gated_mlp(hidden: int, intermediate: int) -> int:
    return 3 * hidden * intermediate


def param_counts(m: Model) -> ParamCounts:
    """Parameter counts of a model from its architecture."""
    embedding = m.vocab_size * m.hidden_size
    lm_head = 0 if m.tied_embeddings else embedding
    attention = m.num_layers * _attention_params(m)
    norms = (2 * m.num_layers + 1) * m.hidden_size
    if m.moe is None:
        dense = m.num_layers * _gated_mlp(m.hidden_size, m.intermediate_size)
        return ParamCounts(embedding, lm_head, attention, dense, 0, 0, norms)
    e = m.moe
    moe_layers = m.num_layers - e.first_dense_layers
    dense = e.first_dense_layers * _gated_mlp(m.hidden_size, m.intermediate_size)
    expert = moe_layers * e.num_experts * _gated_mlp(m.hidden_size, e.expert_intermediate_size)
    shared_one = e.num_shared_experts * _gated_mlp(m.hidden_size, e.expert_intermediate_size)
    router = m.hidden_size * e.num_experts
    return ParamCounts(embedding, lm_head, attention, dense, expert, moe_layers * (shared_one + router), norms)


def active_params(m: Model) -> int:
    """Parameters touched per token: all but the routed experts not chosen (and the embedding lookup)."""
    pc = param_counts(m)
    expert = pc.expert_ffn
    if m.moe is not None:
        expert = expert * m.moe.experts_per_token // m.moe.num_experts
    return pc.total - pc.expert_ffn + expert


def linear_flops_per_token(m: Model) -> float:
    """Matmul FLOPs per token in the transformer body (2 per multiply-accumulate), excluding the LM head."""
    pc = param_counts(m)
    expert = pc.expert_ffn
    if m.moe is not None:
        expert = expert * m.moe.experts_per_token / m.moe.num_experts
    return 2.0 * (pc.attention + pc.dense_ffn + pc.shared_ffn + expert)


def lm_head_flops_per_token(m: Model) -> float:
    """FLOPs of the vocabulary projection, paid once per generated token."""
    return 2.0 * m.vocab_size * m.hidden_size


def attention_flops_per_token_context(m: Model) -> float:
    """FLOPs of QK^T and PV for one query token against one context token, all layers."""
    if m.mla is not None:
        a = m.mla
        # Absorbed MLA attends over the latent: score dim kv_lora + rope, value dim kv_lora.
        return 2.0 * m.num_layers * m.num_attention_heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim)
    return 4.0 * m.num_layers * m.num_attention_heads * m.head_dim


def kv_elements_per_token(m: Model) -> int:
    """KV-cache elements one token occupies across all layers (whole model, before sharding)."""
    if m.mla is not None:
        return m.num_layers * (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim)
    return 2 * m.num_layers * m.num_kv_heads * m.head_dim


def kv_shard_factor(m: Model, tp: int) -> float:
    """Fraction of a token's KV cache one tensor-parallel rank holds.

    KV heads split across ranks; when there are fewer KV heads than ranks each head is replicated.
    MLA's latent is not split by heads, so every rank holds all of it.
    """
    if m.mla is not None:
        return 1.0
    return 1.0 / min(tp, m.num_kv_heads)


def model_class(m: Model) -> str:
    """The architecture class calibration coverage is counted by: 'mla' (DeepSeek latent attention, MoE in
    the catalog), 'moe' or 'dense' - what changes the physics a fit has to learn."""
    if m.mla is not None:
        return "mla"
    return "moe" if m.moe is not None else "dense"
