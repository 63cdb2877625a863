"""Published quality figures per (precision, model): lookup, the reference formats, unknowns, user overlays."""

from __future__ import annotations

import pytest
import yaml

from fleetwise.catalog import ENV_VAR, load_catalog
from fleetwise.errors import CatalogError


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_bf16_and_fp16_are_the_zero_reference_for_every_model(catalog):
    for precision in ("bf16", "fp16"):
        for model in catalog.models:
            q = catalog.precision(precision).quality_for(model)
            assert q is not None and q.drop_pct == 0.0, (precision, model)


def test_published_4bit_figures_are_per_model(catalog):
    int4 = catalog.precision("int4")
    assert int4.quality_for("llama-3.1-70b").drop_pct == pytest.approx(2.6)  # 100 - 97.4 (OpenLLM v2)
    assert int4.quality_for("llama-3.1-8b").drop_pct == pytest.approx(3.9)  # 100 - 96.1
    assert int4.quality_for("llama-3.1-405b").drop_pct == pytest.approx(1.0)


def test_no_published_figure_is_unknown_not_zero(catalog):
    assert catalog.precision("fp4").quality_for("llama-3.1-70b") is None
    assert catalog.precision("int4").quality_for("mixtral-8x7b") is None
    assert catalog.precision("fp8").quality_for("qwen2.5-72b") is None


def test_every_figure_has_a_source_a_date_and_names_catalog_models(catalog):
    for precision in catalog.precisions.values():
        for q in precision.quality:
            assert q.source.strip() and q.basis.strip(), (precision.id, q)
            assert len(q.as_of) >= 4 and q.as_of[:2] == "20", (precision.id, q.as_of)
            assert all(m == "*" or m in catalog.models for m in q.models), (precision.id, q.models)


def _precision_file(tmp_path, quality) -> str:
    entry = {"id": "int4", "weight_bytes": 0.52, "compute_dtype": "bf16", "kv_dtype": "bf16", "kv_bytes": 2,
             "native_generations": ["hopper"], "source": "test", "as_of": "2025-01-01", "quality": quality}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"precisions": [entry]}), encoding="utf-8")
    return str(tmp_path)


def test_a_user_catalog_can_publish_its_own_figure(tmp_path):
    d = _precision_file(tmp_path, [{"models": ["mixtral-8x7b"], "drop_pct": 0.4, "basis": "own eval",
                                    "source": "our lab", "as_of": "2025-02-01"}])
    q = load_catalog(d).precision("int4").quality_for("mixtral-8x7b")
    assert q is not None and q.drop_pct == 0.4 and q.source == "our lab"


@pytest.mark.parametrize("bad, field", [
    ({"models": [], "drop_pct": 1.0, "basis": "b", "source": "s", "as_of": "2025-01-01"}, "models"),
    ({"models": ["x"], "drop_pct": "1%", "basis": "b", "source": "s", "as_of": "2025-01-01"}, "drop_pct"),
    ({"models": ["x"], "drop_pct": 1.0, "basis": "b", "as_of": "2025-01-01"}, "source"),
    ({"models": ["x"], "drop_pct": float("nan"), "basis": "b", "source": "s", "as_of": "2025-01-01"}, "drop_pct"),
])
def test_bad_quality_entries_name_the_field(tmp_path, bad, field):
    with pytest.raises(CatalogError, match=field):
        load_catalog(_precision_file(tmp_path, [bad]))
