"""Precision catalog: required formats, byte sizes, native generations, aliases."""

from __future__ import annotations

import pytest

from fleetwise.catalog import load_catalog, normalize_name
from fleetwise.errors import UnknownNameError

REQUIRED = ["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
ALL_GENERATIONS = {"ampere", "ada", "hopper", "blackwell", "cdna3"}

ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "w8a8-fp8": "fp8",
    "FP8-E4M3": "fp8",
    "w8a8": "int8",
    "SmoothQuant": "int8",
    "w4a16": "int4",
    "AWQ": "int4",
    "gptq": "int4",
    "int4-awq": "int4",
    "int4_awq": "int4",
    "NVFP4": "fp4",
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_required_precisions_present(catalog):
    assert not [p for p in REQUIRED if p not in catalog.precisions]


@pytest.mark.parametrize("precision_id", REQUIRED)
def test_entry_sanity(catalog, precision_id):
    p = catalog.precisions[precision_id]
    assert p.source.strip() and p.as_of
    assert p.quality_delta.strip()
    assert p.native_generations and set(p.native_generations) <= ALL_GENERATIONS
    assert p.kv_bytes == (1 if p.kv_dtype == "fp8" else 2)
    assert p.compute_dtype in {"bf16", "fp16", "fp8", "int8", "fp4"}


def test_byte_sizes(catalog):
    pr = catalog.precisions
    assert pr["bf16"].weight_bytes == pr["fp16"].weight_bytes == 2.0
    assert pr["fp8"].weight_bytes == pr["int8"].weight_bytes == 1.0
    assert 0.5 < pr["int4"].weight_bytes < 0.6
    assert pr["fp4"].weight_bytes == pytest.approx(0.5 + 1 / 16)
    assert pr["fp8"].kv_bytes == 1 and pr["fp4"].kv_bytes == 1
    for pid in ("bf16", "fp16", "int8", "int4"):
        assert pr[pid].kv_bytes == 2


def test_compute_dtypes(catalog):
    pr = catalog.precisions
    assert {pid: pr[pid].compute_dtype for pid in REQUIRED} == {
        "bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "int4": "bf16", "fp4": "fp4",
    }


def test_native_generations(catalog):
    pr = catalog.precisions
    assert "ampere" not in pr["fp8"].native_generations
    assert set(pr["fp8"].native_generations) == {"ada", "hopper", "blackwell", "cdna3"}
    assert pr["fp4"].native_generations == ("blackwell",)
    assert set(pr["int4"].native_generations) == ALL_GENERATIONS
    assert {"ampere", "ada", "hopper", "cdna3"} <= set(pr["int8"].native_generations)
    for pid in ("bf16", "fp16"):
        assert set(pr[pid].native_generations) == ALL_GENERATIONS


def test_native_generations_agree_with_gpu_tflops(catalog):
    """A precision is native on a GPU's generation exactly when that GPU lists its compute dtype."""
    for p in catalog.precisions.values():
        for g in catalog.gpus.values():
            if p.compute_dtype in ("bf16", "fp16"):
                continue  # weight-only formats run 16-bit GEMMs everywhere
            assert (g.generation in p.native_generations) == (p.compute_dtype in g.tflops), (p.id, g.id)


@pytest.mark.parametrize(("name", "precision_id"), sorted(ALIASES.items()))
def test_aliases_resolve(catalog, name, precision_id):
    assert catalog.precision(name).id == precision_id


def test_aliases_do_not_collide(catalog):
    owner: dict[str, str] = {}
    for p in catalog.precisions.values():
        for name in (p.id, *p.aliases):
            key = normalize_name(name)
            assert owner.setdefault(key, p.id) == p.id, f"{name} claimed by {owner[key]} and {p.id}"


@pytest.mark.parametrize("name", ["int2", "fp6", "mxfp4", "gguf-q4"])
def test_unknown_precision_raises(catalog, name):
    with pytest.raises(UnknownNameError):
        catalog.precision(name)
