"""Model catalog: architecture numbers reproduce the published parameter counts, names resolve."""

from __future__ import annotations

import pytest

from fleetwise.catalog import load_catalog
from fleetwise.errors import UnknownNameError
from fleetwise.perf.arch import active_params, kv_elements_per_token, param_counts

REQUIRED = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b",
    "llama-3.1-405b", "mistral-7b", "mixtral-8x7b", "qwen2.5-7b", "qwen2.5-72b", "deepseek-v3",
]

# Names users type (HF ids incl. instruct/chat variants, short forms) -> catalog id.
NAMES = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-7b-chat-hf": "llama-2-7b",
    "Llama-2-7b-chat": "llama-2-7b",
    "meta-llama/Llama-2-13b-chat-hf": "llama-2-13b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Llama-2-70b-chat-hf": "llama-2-70b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "meta-llama/Meta-Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "Meta-Llama-3.1-70B": "llama-3.1-70b",
    "llama3.1-70b": "llama-3.1-70b",
    "meta-llama/Llama-3.3-70B-Instruct": "llama-3.3-70b",
    "Llama-3.3-70B": "llama-3.3-70b",
    "meta-llama/Llama-3.1-405B-Instruct": "llama-3.1-405b",
    "meta-llama/Meta-Llama-3.1-405B-Instruct": "llama-3.1-405b",
    "mistralai/Mistral-7B-v0.3": "mistral-7b",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral-7b",
    "Mistral-7B-v0.3": "mistral-7b",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b",
    "Qwen/Qwen2.5-7B": "qwen2.5-7b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
    "Qwen/Qwen2.5-72B-Instruct": "qwen2.5-72b",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "deepseek-ai/DeepSeek-V3-Base": "deepseek-v3",
    "deepseek-ai/DeepSeek-V3-0324": "deepseek-v3",
    "DEEPSEEK_V3": "deepseek-v3",
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_required_models_present(catalog):
    missing = [m for m in REQUIRED if m not in catalog.models]
    assert not missing


@pytest.mark.parametrize("model_id", REQUIRED)
def test_total_params_match_published(catalog, model_id):
    m = catalog.models[model_id]
    published = m.published_params_b * 1e9
    assert param_counts(m).total == pytest.approx(published, rel=0.02)


@pytest.mark.parametrize("model_id", REQUIRED)
def test_active_params_match_published(catalog, model_id):
    m = catalog.models[model_id]
    if m.published_active_params_b is None:
        assert m.moe is None  # every MoE entry states its active count
        assert active_params(m) == param_counts(m).total
        return
    assert active_params(m) == pytest.approx(m.published_active_params_b * 1e9, rel=0.03)


def test_moe_and_mla_structure(catalog):
    mixtral = catalog.models["mixtral-8x7b"]
    assert mixtral.moe is not None and mixtral.mla is None
    assert (mixtral.moe.num_experts, mixtral.moe.experts_per_token) == (8, 2)
    ds = catalog.models["deepseek-v3"]
    assert ds.attention == "mla" and ds.mla is not None and ds.moe is not None
    assert (ds.moe.num_experts, ds.moe.experts_per_token, ds.moe.num_shared_experts) == (256, 8, 1)
    assert ds.moe.first_dense_layers == 3
    for mid in REQUIRED:
        m = catalog.models[mid]
        assert (m.mla is not None) == (m.attention == "mla")
        if m.attention == "mha":
            assert m.num_kv_heads == m.num_attention_heads
        if m.attention == "gqa":
            assert m.num_kv_heads < m.num_attention_heads
            assert m.num_attention_heads % m.num_kv_heads == 0


@pytest.mark.parametrize(
    ("model_id", "elements"),
    [
        ("llama-3.1-70b", 2 * 80 * 8 * 128),  # 163,840
        ("llama-3.1-8b", 2 * 32 * 8 * 128),  # 65,536
        ("llama-2-7b", 2 * 32 * 32 * 128),  # MHA: 262,144
        ("llama-3.1-405b", 2 * 126 * 8 * 128),  # 258,048
        ("qwen2.5-7b", 2 * 28 * 4 * 128),  # 28,672
        ("mixtral-8x7b", 2 * 32 * 8 * 128),
        ("deepseek-v3", 61 * (512 + 64)),  # MLA latent + rope key: 35,136
    ],
)
def test_kv_elements_by_hand(catalog, model_id, elements):
    assert kv_elements_per_token(catalog.models[model_id]) == elements


def test_llama_3_1_70b_kv_bytes_bf16(catalog):
    # 163,840 elements x 2 bytes = 320 KiB per token.
    assert kv_elements_per_token(catalog.models["llama-3.1-70b"]) * 2 == 320 * 1024


@pytest.mark.parametrize(("name", "model_id"), sorted(NAMES.items()))
def test_names_resolve(catalog, name, model_id):
    assert catalog.model(name).id == model_id


@pytest.mark.parametrize("model_id", REQUIRED)
def test_hf_id_and_aliases_resolve(catalog, model_id):
    m = catalog.models[model_id]
    for name in (m.id, m.hf_id, m.id.upper(), *m.aliases):
        assert catalog.model(name).id == model_id


def test_aliases_do_not_collide(catalog):
    owner: dict[str, str] = {}
    for m in catalog.models.values():
        for name in (m.id, m.hf_id, *m.aliases):
            key = name.strip().lower().replace("_", "-").replace(" ", "-")
            assert owner.setdefault(key, m.id) == m.id, f"{name} claimed by {owner[key]} and {m.id}"


def test_every_model_cites_source_and_date(catalog):
    for m in catalog.models.values():
        assert m.source.strip() and "huggingface.co" in m.source
        assert len(m.as_of) == 10 and m.as_of[4] == "-" and m.as_of[7] == "-"


@pytest.mark.parametrize("name", ["gpt-5", "llama-9-1t", "meta-llama/Llama-4-Behemoth", ""])
def test_unknown_model_raises(catalog, name):
    with pytest.raises(UnknownNameError):
        catalog.model(name)
