"""Cold start = boot + weight bytes / load bandwidth + engine start."""

from __future__ import annotations

import pytest

from fleetwise.allocate.coldstart import cold_start_s
from fleetwise.catalog import load_catalog
from fleetwise.errors import ConfigError, UnknownNameError
from fleetwise.perf.memory import weight_bytes


def test_formula_by_hand():
    cat = load_catalog(None)
    w = weight_bytes(cat.model("llama-3.1-70b"), cat.precision("fp8"))
    assert cold_start_s("llama-3.1-70b", "fp8", boot_s=100, load_gb_per_s=2.0, engine_start_s=30) == \
        pytest.approx(100 + w / 2e9 + 30)


def test_bigger_models_and_wider_weights_start_slower():
    assert cold_start_s("llama-3.1-70b", "fp8") > cold_start_s("llama-3.1-8b", "fp8")
    assert cold_start_s("llama-3.1-8b", "bf16") > cold_start_s("llama-3.1-8b", "fp8")
    assert cold_start_s("llama-3.1-8b", "fp8", load_gb_per_s=10) < cold_start_s("llama-3.1-8b", "fp8")


def test_bad_inputs():
    with pytest.raises(ConfigError):
        cold_start_s("llama-3.1-8b", "fp8", load_gb_per_s=0)
    with pytest.raises(UnknownNameError):
        cold_start_s("no-such-model", "fp8")
