"""Bad catalog files: one CatalogError line naming file, entry and field, never a traceback or a silent value.

Regressions of a fuzzing pass: non-UTF-8 files, NaN/infinite numbers, booleans read as integers, KV heads
that cannot group the attention heads, keys given twice, and an empty catalog name that scanned the
working directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleetwise.catalog import ENV_VAR, load_catalog
from fleetwise.errors import CatalogError

NAN, INF = float("nan"), float("inf")


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def gpu(**changes) -> dict:
    entry = {
        "id": "test-gpu", "name": "Test GPU", "vendor": "nvidia", "generation": "hopper", "memory_gib": 80,
        "hbm_bandwidth_tbps": 3.35, "tflops": {"bf16": 990, "fp8": 1979}, "interconnect": "nvlink",
        "interconnect_bandwidth_gbps": 900, "source": "test", "as_of": "2025-01-01",
    }
    return {**entry, **changes}


def model(**changes) -> dict:
    entry = {
        "id": "test-model", "hf_id": "test/test-model", "num_layers": 32, "hidden_size": 4096,
        "num_attention_heads": 32, "num_kv_heads": 8, "head_dim": 128, "intermediate_size": 14336,
        "vocab_size": 128256, "tied_embeddings": False, "attention": "gqa", "max_context": 8192,
        "published_params_b": 8.0, "source": "test", "as_of": "2025-01-01",
    }
    return {**entry, **changes}


def offer(**changes) -> dict:
    entry = {
        "id": "test/offer", "cloud": "aws", "region": "us-east-1", "instance_type": "p5.48xlarge",
        "gpu": "h100", "gpu_count": 8, "price_usd_per_hour": {"on_demand": 10.0}, "source": "test",
        "as_of": "2025-01-01",
    }
    return {**entry, **changes}


def write(directory: Path, data: dict | str | bytes, name: str = "cat.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, *needles: str) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        load_catalog(str(path.parent))
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return info.value


@pytest.mark.parametrize(
    ("section", "entry", "field", "words"),
    [
        ("gpus", gpu(tflops={"bf16": NAN}), "tflops.bf16", "finite"),
        ("gpus", gpu(tflops={"bf16": 990, "fp8": -1}), "tflops.fp8", "greater than 0"),
        ("gpus", gpu(memory_gib=INF), "memory_gib", "finite"),
        ("gpus", gpu(hbm_bandwidth_tbps=NAN), "hbm_bandwidth_tbps", "finite"),
        ("gpus", gpu(tdp_w=INF), "tdp_w", "finite"),
        ("gpus", gpu(memory_gib="80"), "memory_gib", "number"),
        ("gpus", gpu(memory_gib=True), "memory_gib", "number"),
        ("offers", offer(price_usd_per_hour={"on_demand": INF}), "price_usd_per_hour.on_demand", "finite"),
        ("offers", offer(price_usd_per_hour={"spot": NAN}), "price_usd_per_hour.spot", "finite"),
        ("offers", offer(spot_hazard_per_hour=INF), "spot_hazard_per_hour", "finite"),
        ("offers", offer(gpu_count=True), "gpu_count", "integer"),
        ("offers", offer(gpu_count=8.0), "gpu_count", "integer"),
        ("offers", offer(gpu_count=None), "gpu_count", "needs a value"),
        ("models", model(num_attention_heads=True, num_kv_heads=1), "num_attention_heads", "integer"),
        ("models", model(num_attention_heads=8, num_kv_heads=32), "num_kv_heads", "at most num_attention"),
        ("models", model(num_attention_heads=32, num_kv_heads=7), "num_kv_heads", "divide"),
        ("models", model(tied_embeddings=1), "tied_embeddings", "boolean"),
        ("models", model(published_params_b=NAN), "published_params_b", "finite"),
        ("models", model(moe={"num_experts": 8, "experts_per_token": 9, "expert_intermediate_size": 1}),
         "moe.experts_per_token", "at most num_experts"),
    ],
    ids=["tflops-nan", "tflops-negative", "memory-inf", "bandwidth-nan", "tdp-inf", "memory-string",
         "memory-bool", "price-inf", "spot-nan", "hazard-inf", "gpu-count-bool", "gpu-count-float",
         "gpu-count-null", "heads-bool", "kv-heads-gt-heads", "kv-heads-not-divisor", "tied-int",
         "params-nan", "experts-per-token"],
)
def test_bad_number_names_file_entry_and_field(tmp_path, section, entry, field, words):
    path = write(tmp_path / "cat", {section: [entry]})
    err = load_error(path, f"entry '{entry['id']}'", f"field '{field}'", words)
    assert err.field == field


def test_valid_entries_of_every_kind_load(tmp_path):
    write(tmp_path / "cat", {"gpus": [gpu()], "models": [model()], "offers": [offer()]})
    cat = load_catalog(str(tmp_path / "cat"))
    assert cat.gpu("test-gpu").memory_gib == 80
    assert cat.model("test-model").num_kv_heads == 8
    assert cat.offer("test/offer").price("on_demand") == 10.0


@pytest.mark.parametrize(
    ("data", "line"),
    [(bytes(range(128, 256)), 1), ("offers:\n  - id: caf\xe9\n".encode("latin-1"), 2)],
    ids=["binary", "latin-1"],
)
def test_file_that_is_not_utf8(tmp_path, data, line):
    path = write(tmp_path / "cat", data)
    err = load_error(path, "UTF-8")
    assert err.line == line


def test_byte_order_mark_is_ignored(tmp_path):
    text = yaml.safe_dump({"offers": [offer()]}, sort_keys=False)
    path = write(tmp_path / "cat", "\ufeff" + text)
    assert load_catalog(str(path.parent)).offer("test/offer").gpu_count == 8


def test_key_given_twice_is_an_error_not_the_last_value(tmp_path):
    text = yaml.safe_dump({"gpus": [gpu()]}, sort_keys=False)
    text = text.replace("  memory_gib: 80\n", "  memory_gib: 80\n  memory_gib: 8\n")
    path = write(tmp_path / "cat", text)
    err = load_error(path, "memory_gib", "twice")
    assert err.line == text.splitlines().index("  memory_gib: 8") + 1


@pytest.mark.parametrize("spec", ["", "  "])
def test_empty_catalog_name_is_refused(tmp_path, monkeypatch, spec):
    write(tmp_path / "stray", {"offers": [offer(id="stray/offer")]})
    monkeypatch.chdir(tmp_path)  # Path("") is the working directory: it must not be scanned
    with pytest.raises(CatalogError) as info:
        load_catalog(spec)
    assert "catalog" in str(info.value) and "\n" not in str(info.value)


def test_non_string_section_name_is_one_line(tmp_path):
    path = write(tmp_path / "cat", "1: []\noffers: []\n")
    load_error(path, "unknown section '1'")
