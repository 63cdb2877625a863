"""The shipped instance offers: default catalog (curated AWS/GCP/Azure/Lambda) and the seed scenario."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import math
from pathlib import Path

import pytest

from fleetwise.catalog import DATA_DIR, ENV_VAR, TIERS, load_catalog
from fleetwise.catalog.records import SPOT_BUCKET_MONTHLY_RATE, hazard_from_monthly_fraction
from tests.shared_data import shared

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRICE_DATA = shared("prices")
BUCKETS_IN_ORDER = ["<5%", "5-10%", "10-15%", "15-20%", ">20%"]
CLOUDS = ("aws", "gcp", "azure", "lambda")


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def catalog():
    return load_catalog()


@pytest.fixture
def offers(catalog):
    return list(catalog.offers.values())


def test_default_catalog_has_a_curated_set_of_offers(offers):
    assert 40 <= len(offers) <= 120


@pytest.mark.parametrize("cloud", CLOUDS)
def test_at_least_one_offer_per_cloud(catalog, cloud):
    assert catalog.find_offers(clouds=[cloud])


def test_every_offer_gpu_resolves_to_a_catalog_gpu(catalog, offers):
    for offer in offers:
        assert offer.gpu in catalog.gpus, offer.id
        assert catalog.gpu(offer.gpu).id == offer.gpu
        assert offer.gpu_count >= 1


def test_prices_are_non_negative_known_tiers_with_on_demand(offers):
    for offer in offers:
        assert set(offer.price_usd_per_hour) <= set(TIERS), offer.id
        assert offer.price("on_demand") is not None, offer.id
        for tier, price in offer.price_usd_per_hour.items():
            assert price >= 0, (offer.id, tier)
            assert math.isfinite(price), (offer.id, tier)


def test_discounted_tiers_are_cheaper_than_on_demand(offers):
    for offer in offers:
        on_demand = offer.price("on_demand")
        for tier in ("spot", "reserved_1y", "reserved_3y"):
            price = offer.price(tier)
            if price is not None:
                assert price < on_demand, (offer.id, tier, price, on_demand)
        if offer.price("reserved_1y") is not None and offer.price("reserved_3y") is not None:
            assert offer.price("reserved_3y") < offer.price("reserved_1y"), offer.id


def test_offers_have_source_and_iso_as_of_date(offers):
    for offer in offers:
        assert offer.source.strip(), offer.id
        dt.date.fromisoformat(offer.as_of)


def test_offer_ids_follow_cloud_region_type(offers):
    for offer in offers:
        assert offer.id == f"{offer.cloud}/{offer.region}/{offer.instance_type}".lower()


def test_interruption_buckets_only_where_published(offers):
    """AWS publishes Spot Advisor buckets; GCP, Azure and Lambda offers carry none."""
    for offer in offers:
        if offer.spot_interruption_bucket is not None:
            assert offer.cloud == "aws", offer.id
            assert offer.price("spot") is not None, offer.id
        if offer.cloud == "lambda":
            assert offer.price("spot") is None
    assert any(o.spot_interruption_bucket for o in offers if o.cloud == "aws")


def test_no_reserved_prices_outside_aws(offers):
    """Reserved discounts for GCP/Azure/Lambda GPUs are not in any public data the catalog uses."""
    for offer in offers:
        if offer.cloud != "aws":
            assert offer.price("reserved_1y") is None and offer.price("reserved_3y") is None, offer.id


@pytest.mark.parametrize(
    ("offer_id", "gpu", "count"),
    [
        ("aws/us-east-1/p5.48xlarge", "h100-sxm", 8),
        ("aws/us-east-1/p4d.24xlarge", "a100-40gb", 8),
        ("aws/us-east-1/p4de.24xlarge", "a100-80gb", 8),
        ("aws/us-east-1/g5.xlarge", "a10g", 1),
        ("aws/us-east-1/g5.12xlarge", "a10g", 4),
        ("aws/us-east-1/g5.48xlarge", "a10g", 8),
        ("aws/us-east-1/g6.xlarge", "l4", 1),
        ("aws/us-east-1/g6.12xlarge", "l4", 4),
        ("aws/us-east-1/g6e.xlarge", "l40s", 1),
        ("aws/us-east-1/g6e.12xlarge", "l40s", 4),
        ("aws/us-east-1/g6e.48xlarge", "l40s", 8),
        ("aws/us-east-1/p5en.48xlarge", "h200", 8),
        ("aws/us-east-1/p6-b200.48xlarge", "b200", 8),
        ("gcp/us-central1/a2-highgpu-1g", "a100-40gb", 1),
        ("gcp/us-central1/a2-highgpu-8g", "a100-40gb", 8),
        ("gcp/us-east4/a3-highgpu-8g", "h100-sxm", 8),
        ("gcp/us-central1/a3-ultragpu-8g", "h200", 8),
        ("gcp/us-central1/g2-standard-4", "l4", 1),
        ("azure/eastus/standard_nd96isr_h100_v5", "h100-sxm", 8),
        ("azure/eastus/standard_nc24ads_a100_v4", "a100-80gb", 1),
        ("azure/eastus/standard_nc40ads_h100_v5", "h100-pcie", 1),
        ("azure/eastus2/standard_nd96isr_mi300x_v5", "mi300x", 8),
        ("azure/eastus/standard_nv36ads_a10_v5", "a10", 1),
        ("lambda/any/gpu_8x_h100_sxm5", "h100-sxm", 8),
        ("lambda/any/gpu_1x_gh200", "gh200", 1),
        ("lambda/any/gpu_8x_b200_sxm6", "b200", 8),
    ],
)
def test_representative_offers_are_present(catalog, offer_id, gpu, count):
    offer = catalog.offer(offer_id)
    assert (offer.gpu, offer.gpu_count) == (gpu, count)


def test_aws_p5_prices_match_the_snapshot(catalog):
    """Spot-check one offer against the 2025-11-30 snapshot (after the June 2025 p5 price cut)."""
    p5 = catalog.offer("aws/us-east-1/p5.48xlarge")
    assert p5.price("on_demand") == pytest.approx(55.04)
    assert p5.price("spot") == pytest.approx(28.106467)
    assert p5.as_of == "2025-11-30"


def test_gcp_price_is_host_plus_accelerators(catalog):
    """GCP bills GPUs on separate accelerator rows: a2-highgpu-1g = host 0.73948 + 1x A100 2.93391."""
    offer = catalog.offer("gcp/us-central1/a2-highgpu-1g")
    assert offer.price("on_demand") == pytest.approx(0.73948 + 2.93391)
    eight = catalog.offer("gcp/us-central1/a2-highgpu-8g")
    assert eight.price("on_demand") == pytest.approx(5.91582 + 23.47126)


def test_hazard_from_bucket_is_positive_and_increases_with_bucket(catalog):
    template = catalog.offer("aws/us-east-1/g5.xlarge")
    hazards = []
    for bucket in BUCKETS_IN_ORDER:
        offer = dataclasses.replace(template, spot_interruption_bucket=bucket, spot_hazard_per_hour=None)
        hazards.append(offer.hazard_per_hour)
    assert all(h is not None and h > 0 for h in hazards)
    assert hazards == sorted(hazards) and len(set(hazards)) == len(hazards)
    # "<5%" is taken at its 2.5 % midpoint: -ln(1 - 0.025) / 730 h.
    assert hazards[0] == pytest.approx(-math.log(0.975) / 730.0)
    assert set(BUCKETS_IN_ORDER) == set(SPOT_BUCKET_MONTHLY_RATE)


def test_shipped_bucketed_offers_get_a_positive_hazard(offers):
    bucketed = [o for o in offers if o.spot_interruption_bucket]
    assert bucketed
    for offer in bucketed:
        expected = hazard_from_monthly_fraction(SPOT_BUCKET_MONTHLY_RATE[offer.spot_interruption_bucket])
        assert offer.hazard_per_hour == pytest.approx(expected) and expected > 0


def test_explicit_hazard_overrides_bucket(catalog):
    template = catalog.offer("aws/us-east-1/g5.xlarge")
    offer = dataclasses.replace(template, spot_interruption_bucket=">20%", spot_hazard_per_hour=0.01)
    assert offer.hazard_per_hour == 0.01


# --------------------------------------------------------------------------------------------------
# seed-scenario


SEED = {
    "h100_8x": ("h100-sxm", {"on_demand": 32.77, "reserved_1y": 19.06, "spot": 9.83}, 0.05),
    "a100_8x": ("a100-80gb", {"on_demand": 22.03, "reserved_1y": 13.22, "spot": 6.61}, 0.08),
}


def test_seed_scenario_has_exactly_the_two_example_offers():
    catalog = load_catalog("seed-scenario")
    assert sorted(catalog.offers) == sorted(SEED)
    for offer_id, (gpu, prices, hazard) in SEED.items():
        offer = catalog.offer(offer_id)
        assert offer.gpu == gpu
        assert offer.gpu_count == 8
        assert offer.price_usd_per_hour == pytest.approx(prices)
        assert offer.spot_hazard_per_hour == hazard
        assert offer.hazard_per_hour == hazard
        assert offer.as_of == "2026-11-23"
        assert "issue #2" in offer.source
        assert "not a live quote" in offer.notes


def test_seed_scenario_keeps_default_gpus_and_models():
    seed = load_catalog("seed-scenario")
    default = load_catalog()
    assert seed.gpus.keys() == default.gpus.keys()
    assert seed.models.keys() == default.models.keys()


# --------------------------------------------------------------------------------------------------
# the generator script reproduces the shipped files


@pytest.mark.skipif(not PRICE_DATA.is_dir(), reason="../shared/data/prices not available")
def test_derive_offers_script_reproduces_shipped_files(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("derive_offers", PROJECT_ROOT / "scripts" / "derive_offers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--data", str(PRICE_DATA), "--out", str(tmp_path), "--no-validate"]) == 0
    for cloud in CLOUDS:
        name = f"offers-{cloud}.yaml"
        shipped = (DATA_DIR / "default" / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == shipped, f"{name} is stale: re-run the script"
