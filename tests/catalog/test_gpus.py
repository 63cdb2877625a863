"""GPU catalog: required GPUs, datasheet sanity, native dtypes per generation, alias resolution."""

from __future__ import annotations

import pytest

from fleetwise.catalog import load_catalog, normalize_name
from fleetwise.errors import UnknownNameError

REQUIRED = [
    "a10g", "a10", "l4", "l40s", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "gh200",
    "b200", "gb200", "mi300x",
]

NAMES = {
    # Names from the brief.
    "H100": "h100-sxm",
    "H100-SXM": "h100-sxm",
    "H100-80GB": "h100-sxm",
    "A100-SXM4-80GB": "a100-80gb",
    "A100-80GB": "a100-80gb",
    "A100 80GB": "a100-80gb",
    "a100-sxm4-80gb": "a100-80gb",
    "A100": "a100-40gb",
    "A100-40GB": "a100-40gb",
    "A100-SXM4-40GB": "a100-40gb",
    "H100-PCIE": "h100-pcie",
    "H200": "h200",
    "H200-SXM": "h200",
    "B200": "b200",
    "GB200": "gb200",
    "GH200": "gh200",
    "MI300X": "mi300x",
    "L40S": "l40s",
    "L4": "l4",
    "A10G": "a10g",
    "A10": "a10",
    # AWS GPU_model values (and with per-GPU memory).
    "NVIDIA H100": "h100-sxm",
    "NVIDIA H100 80GB": "h100-sxm",
    "NVIDIA A100": "a100-40gb",
    "NVIDIA A100 40GB": "a100-40gb",
    "NVIDIA A100 80GB": "a100-80gb",
    "NVIDIA A10G": "a10g",
    "NVIDIA L4": "l4",
    "NVIDIA L40S": "l40s",
    "NVIDIA H200": "h200",
    "NVIDIA H200 141GB": "h200",
    "NVIDIA B200": "b200",
    "NVIDIA B200 180GB": "b200",
    # SkyPilot AcceleratorName values (GCP, Azure, Lambda).
    "H100-MEGA": "h100-sxm",
    # nvidia-smi / rocm-smi device names.
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA A100-SXM4-80GB": "a100-80gb",
    "NVIDIA A100-SXM4-40GB": "a100-40gb",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA GH200 480GB": "gh200",
    "AMD Instinct MI300X": "mi300x",
    # Separator and case folding.
    "h100_sxm": "h100-sxm",
    "a100 sxm4 80gb": "a100-80gb",
}

SKYPILOT_NAMES = ["H100", "H100-MEGA", "A100", "A100-80GB", "L4", "H200", "B200", "MI300X", "GH200", "A10"]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_required_gpus_present(catalog):
    assert not [g for g in REQUIRED if g not in catalog.gpus]


@pytest.mark.parametrize("gpu_id", REQUIRED)
def test_datasheet_sanity(catalog, gpu_id):
    g = catalog.gpus[gpu_id]
    assert g.memory_gib > 0 and g.hbm_bandwidth_tbps > 0
    assert g.interconnect_bandwidth_gbps > 0
    assert g.tflops.get("bf16", 0) > 0
    assert all(v > 0 for v in g.tflops.values())
    assert g.source.strip() and "http" in g.source
    assert len(g.as_of) == 10 and g.as_of[4] == "-" and g.as_of[7] == "-"
    # 8-bit paths are at least as fast as 16-bit ones, 4-bit at least as fast as 8-bit.
    for low, high in (("fp8", "bf16"), ("int8", "bf16"), ("fp4", "fp8")):
        if low in g.tflops and high in g.tflops:
            assert g.tflops[low] >= g.tflops[high]
    assert g.flops_per_s("bf16") == pytest.approx(g.tflops["bf16"] * 1e12)


@pytest.mark.parametrize("gpu_id", REQUIRED)
def test_native_dtypes_follow_generation(catalog, gpu_id):
    g = catalog.gpus[gpu_id]
    if g.generation == "ampere":
        assert "fp8" not in g.tflops
        assert g.flops_per_s("fp8") is None
    else:
        assert "fp8" in g.tflops
    assert ("fp4" in g.tflops) == (g.generation == "blackwell")


def test_expected_generations(catalog):
    gen = {gid: catalog.gpus[gid].generation for gid in REQUIRED}
    assert {k for k, v in gen.items() if v == "ampere"} == {"a10g", "a10", "a100-40gb", "a100-80gb"}
    assert {k for k, v in gen.items() if v == "ada"} == {"l4", "l40s"}
    assert {k for k, v in gen.items() if v == "hopper"} == {"h100-sxm", "h100-pcie", "h200", "gh200"}
    assert {k for k, v in gen.items() if v == "blackwell"} == {"b200", "gb200"}
    assert gen["mi300x"] == "cdna3" and catalog.gpus["mi300x"].vendor == "amd"


def test_interconnects(catalog):
    pcie = {"a10g", "a10", "l4", "l40s", "h100-pcie"}
    for gid in pcie:
        assert catalog.gpus[gid].interconnect == "pcie"
    assert catalog.gpus["h100-pcie"].interconnect_bandwidth_gbps == 128
    for gid in pcie - {"h100-pcie"}:
        assert catalog.gpus[gid].interconnect_bandwidth_gbps == 64
    nvlink = {"a100-40gb": 600, "a100-80gb": 600, "h100-sxm": 900, "h200": 900, "gh200": 900,
              "b200": 1800, "gb200": 1800}
    for gid, bw in nvlink.items():
        assert catalog.gpus[gid].interconnect == "nvlink"
        assert catalog.gpus[gid].interconnect_bandwidth_gbps == bw
    assert catalog.gpus["mi300x"].interconnect == "infinity-fabric"
    assert catalog.gpus["mi300x"].interconnect_bandwidth_gbps == 896


def test_key_datasheet_figures(catalog):
    g = catalog.gpus
    assert (g["h100-sxm"].memory_gib, g["h100-sxm"].hbm_bandwidth_tbps) == (80, 3.35)
    assert (g["h200"].memory_gib, g["h200"].hbm_bandwidth_tbps) == (141, 4.8)
    assert (g["gh200"].memory_gib, g["gh200"].hbm_bandwidth_tbps) == (96, 4.0)
    assert (g["b200"].memory_gib, g["b200"].tflops["fp4"]) == (180, 9000)
    assert (g["gb200"].memory_gib, g["gb200"].hbm_bandwidth_tbps) == (186, 8.0)
    assert g["gb200"].tflops == {"bf16": 2500, "fp16": 2500, "fp8": 5000, "int8": 5000, "fp4": 10000}
    assert g["a100-40gb"].hbm_bandwidth_tbps < g["a100-80gb"].hbm_bandwidth_tbps
    assert g["h200"].tflops == g["h100-sxm"].tflops


@pytest.mark.parametrize(("name", "gpu_id"), sorted(NAMES.items()))
def test_names_resolve(catalog, name, gpu_id):
    assert catalog.gpu(name).id == gpu_id
    assert catalog.gpu(name.lower()).id == gpu_id
    assert catalog.gpu(name.upper()).id == gpu_id


@pytest.mark.parametrize("name", SKYPILOT_NAMES)
def test_skypilot_accelerator_names_resolve(catalog, name):
    assert catalog.gpu(name).id in REQUIRED


@pytest.mark.parametrize("gpu_id", REQUIRED)
def test_ids_and_aliases_resolve_to_themselves(catalog, gpu_id):
    g = catalog.gpus[gpu_id]
    for name in (g.id, g.id.upper(), *g.aliases):
        assert catalog.gpu(name).id == gpu_id


def test_aliases_do_not_collide(catalog):
    owner: dict[str, str] = {}
    for g in catalog.gpus.values():
        for name in (g.id, *g.aliases):
            key = normalize_name(name)
            assert owner.setdefault(key, g.id) == g.id, f"{name} claimed by {owner[key]} and {g.id}"


@pytest.mark.parametrize("name", ["V100", "T4", "B300", "H100 NVL", "MI250X", "nvidia-a100-pcie-40gb"])
def test_unknown_gpu_raises(catalog, name):
    with pytest.raises(UnknownNameError):
        catalog.gpu(name)
