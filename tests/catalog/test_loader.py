"""Loading user catalog directories, and one-line errors for bad catalog files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from fleetwise.catalog import ENV_VAR, load_catalog
from fleetwise.errors import CatalogError

OVERRIDDEN = "aws/us-east-1/p5.48xlarge"  # a shipped default offer


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def offer(**changes) -> dict:
    """A valid offer entry, with fields changed or (value None) removed."""
    entry = {
        "id": "my-cloud/dc1/8xh100",
        "cloud": "my-cloud",
        "region": "dc1",
        "instance_type": "8xh100",
        "gpu": "h100",  # an alias of h100-sxm
        "gpu_count": 8,
        "price_usd_per_hour": {"on_demand": 20.0, "reserved_1y": 14.0},
        "source": "our 2026 colo contract",
        "as_of": "2026-01-15",
    }
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def write_catalog(directory: Path, text_or_data, name: str = "offers.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    text = text_or_data if isinstance(text_or_data, str) else yaml.safe_dump(text_or_data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """A user catalog that overrides one shipped offer's prices and adds a new offer."""
    override = offer(
        id=OVERRIDDEN,
        cloud="aws",
        region="us-east-1",
        instance_type="p5.48xlarge",
        gpu="h100-sxm",
        price_usd_per_hour={"on_demand": 40.0, "spot": 12.5},
        source="negotiated EDP rate",
    )
    write_catalog(tmp_path / "mine", {"offers": [override, offer()]})
    return tmp_path / "mine"


def check_overlay(catalog, shipped) -> None:
    p5 = catalog.offer(OVERRIDDEN)
    assert p5.price_usd_per_hour == {"on_demand": 40.0, "spot": 12.5}
    assert p5.source == "negotiated EDP rate"
    assert shipped.offer(OVERRIDDEN).price("on_demand") != 40.0  # the shipped catalog is untouched
    new = catalog.offer("my-cloud/dc1/8xh100")
    assert new.gpu == "h100-sxm" and new.gpu_count == 8  # the alias resolved to the catalog id
    assert new.price("reserved_1y") == 14.0
    assert set(catalog.offers) == set(shipped.offers) | {"my-cloud/dc1/8xh100"}


def test_user_dir_argument_overrides_and_adds(user_dir):
    check_overlay(load_catalog(str(user_dir)), shipped=load_catalog())


def test_env_var_overrides_and_adds(user_dir, monkeypatch):
    shipped = load_catalog()
    monkeypatch.setenv(ENV_VAR, str(user_dir))
    check_overlay(load_catalog(), shipped)


def test_env_var_dirs_apply_in_order_later_wins(user_dir, tmp_path, monkeypatch):
    later = write_catalog(tmp_path / "later", {"offers": [offer(price_usd_per_hour={"on_demand": 18.0})]}).parent
    monkeypatch.setenv(ENV_VAR, os.pathsep.join([str(user_dir), str(later)]))
    catalog = load_catalog()
    assert catalog.offer("my-cloud/dc1/8xh100").price_usd_per_hour == {"on_demand": 18.0}
    assert catalog.offer(OVERRIDDEN).price("on_demand") == 40.0


def test_env_var_adds_to_a_named_catalog(user_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(user_dir))
    catalog = load_catalog("seed-scenario")
    assert {"h100_8x", "a100_8x", "my-cloud/dc1/8xh100"} <= set(catalog.offers)


def test_override_is_case_insensitive_on_id(tmp_path):
    write_catalog(tmp_path, {"offers": [offer(id=OVERRIDDEN.upper(), price_usd_per_hour={"on_demand": 1.0})]})
    catalog = load_catalog(str(tmp_path))
    assert catalog.offer(OVERRIDDEN).price("on_demand") == 1.0


def test_user_dir_may_add_a_gpu_used_by_its_offer(tmp_path):
    shipped = load_catalog().gpu("h100-sxm")
    gpu = {
        "id": "h20",
        "name": "NVIDIA H20",
        "vendor": "nvidia",
        "generation": "hopper",
        "memory_gib": 96,
        "hbm_bandwidth_tbps": 4.0,
        "tflops": {"bf16": 148, "fp8": 296},
        "interconnect": "nvlink",
        "interconnect_bandwidth_gbps": 900,
        "source": "test",
        "as_of": "2024-01-01",
    }
    write_catalog(tmp_path, {"gpus": [gpu], "offers": [offer(gpu="h20")]})
    catalog = load_catalog(str(tmp_path))
    assert catalog.offer("my-cloud/dc1/8xh100").gpu == "h20"
    assert catalog.gpu("h100-sxm") == shipped


def test_missing_directory_is_a_catalog_error(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(CatalogError) as info:
        load_catalog(str(missing))
    assert str(missing) in str(info.value)


def test_directory_without_yaml_is_a_catalog_error(tmp_path):
    (tmp_path / "README.txt").write_text("no catalog here")
    with pytest.raises(CatalogError) as info:
        load_catalog(str(tmp_path))
    assert str(tmp_path) in str(info.value) and ".yaml" in str(info.value)


# --------------------------------------------------------------------------------------------------
# bad files: one CatalogError, one line, naming file, entry and field


def load_error(path: Path) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog(str(path.parent))
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        (offer(gpu_count=None), "gpu_count", "missing"),
        (offer(source=None), "source", "missing"),
        (offer(price_usd_per_hour={"on_demand": -3.0}), "price_usd_per_hour.on_demand", "greater than or equal to 0"),
        (offer(price_usd_per_hour={"on_demand": 5.0, "spot": -0.1}), "price_usd_per_hour.spot", "0"),
        (offer(price_usd_per_hour={}), "price_usd_per_hour", "at least one tier"),
        (offer(price_usd_per_hour={"on_demand": 5.0, "spto": 1.0}), "price_usd_per_hour.spto", "unknown field"),
        (offer(gpu_count=0), "gpu_count", "greater than 0"),
        (offer(gpu_count="eight"), "gpu_count", "integer"),
        (offer(spot_interruption_bucket="3%"), "spot_interruption_bucket", "<5%"),
        (offer(spot_hazard_per_hour=-0.1), "spot_hazard_per_hour", "0"),
        (offer(typo_field="x"), "typo_field", "unknown field"),
    ],
    ids=[
        "missing-field",
        "missing-source",
        "negative-price",
        "negative-spot",
        "no-tier",
        "unknown-tier",
        "zero-gpus",
        "gpu-count-not-int",
        "bad-bucket",
        "negative-hazard",
        "unknown-field",
    ],
)
def test_bad_entry_names_file_entry_and_field(tmp_path, entry, field, words):
    path = write_catalog(tmp_path, {"offers": [offer(id="fine/one/x"), entry]})
    message = load_error(path)
    assert f"entry '{entry['id']}'" in message
    assert f"field '{field}'" in message
    assert words in message


def test_unknown_gpu_names_file_entry_and_field(tmp_path):
    path = write_catalog(tmp_path, {"offers": [offer(gpu="tpu-v9")]})
    message = load_error(path)
    assert "entry 'my-cloud/dc1/8xh100'" in message
    assert "field 'gpu'" in message
    assert "unknown GPU 'tpu-v9'" in message


def test_unknown_gpu_is_reported_in_the_file_that_references_it(tmp_path):
    write_catalog(tmp_path, {"offers": [offer(id="a/b/ok")]}, name="a-good.yaml")
    bad = write_catalog(tmp_path, {"offers": [offer(id="a/b/bad", gpu="h1000")]}, name="b-bad.yaml")
    message = load_error(bad)
    assert "entry 'a/b/bad'" in message and "field 'gpu'" in message


def test_duplicate_id_in_one_file(tmp_path):
    path = write_catalog(tmp_path, {"offers": [offer(), offer(price_usd_per_hour={"on_demand": 1.0})]})
    message = load_error(path)
    assert "entry 'my-cloud/dc1/8xh100'" in message
    assert "field 'id'" in message
    assert "duplicate" in message


def test_duplicate_id_differing_only_in_case(tmp_path):
    path = write_catalog(tmp_path, {"offers": [offer(id="A/B/C"), offer(id="a/b/c")]})
    message = load_error(path)
    assert "field 'id'" in message and "duplicate" in message


def test_same_id_in_two_files_is_an_override_not_an_error(tmp_path):
    write_catalog(tmp_path, {"offers": [offer(price_usd_per_hour={"on_demand": 1.0})]}, name="a.yaml")
    write_catalog(tmp_path, {"offers": [offer(price_usd_per_hour={"on_demand": 2.0})]}, name="b.yaml")
    assert load_catalog(str(tmp_path)).offer("my-cloud/dc1/8xh100").price("on_demand") == 2.0


def test_invalid_yaml_names_file_and_line(tmp_path):
    text = "offers:\n  - id: x\n    cloud: aws\n    region: [us-east-1\n    instance_type: p5\n"
    path = write_catalog(tmp_path, text)
    message = load_error(path)
    assert f"{path}:" in message
    line = int(message.split(f"{path}:", 1)[1].split(":", 1)[0])
    assert 4 <= line <= 5  # the unclosed '[' on line 4, detected at line 5
    assert "not valid YAML" in message


def test_tab_indented_yaml_is_a_catalog_error(tmp_path):
    path = write_catalog(tmp_path, "offers:\n\t- id: x\n")
    message = load_error(path)
    assert f"{path}:2" in message


def test_unknown_section_names_file_and_section(tmp_path):
    path = write_catalog(tmp_path, {"offer": [offer()]})
    message = load_error(path)
    assert "unknown section 'offer'" in message


def test_section_must_be_a_list(tmp_path):
    path = write_catalog(tmp_path, {"offers": offer()})
    message = load_error(path)
    assert "'offers'" in message and "list" in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = write_catalog(tmp_path, [offer()])
    message = load_error(path)
    assert "mapping" in message


def test_entry_must_be_a_mapping(tmp_path):
    path = write_catalog(tmp_path, {"offers": ["just-a-string"]})
    message = load_error(path)
    assert "offers[1]" in message


def test_empty_file_is_allowed(tmp_path):
    write_catalog(tmp_path, "# nothing yet\n")
    assert load_catalog(str(tmp_path)).offers.keys() == load_catalog().offers.keys()
