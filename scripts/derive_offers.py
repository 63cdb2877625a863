#!/usr/bin/env python3
"""Derive fleetwise's curated default instance offers from the shared price snapshots.

Usage (from the project root):

    python scripts/derive_offers.py --data ../shared/data/prices --out src/fleetwise/catalog/data/default

Writes offers-aws.yaml, offers-gcp.yaml, offers-azure.yaml and offers-lambda.yaml into --out, then loads
them with fleetwise's own catalog loader and exits non-zero if anything fails to validate.

Curation (deliberately a small, representative subset, not the whole price list):

* Only instance types whose accelerator is a fleetwise catalog GPU (a10g, a10, l4, l40s, a100-40gb,
  a100-80gb, h100-sxm, h100-pcie, h200, gh200, b200, gb200, mi300x), listed explicitly below.
* A handful of regions per cloud (PREFERRED_REGIONS). When a listed type has no usable price in any of
  them, the cheapest usable region for that type is taken instead (and the offer's notes say so).
* Rows with a missing or zero on-demand price are skipped. A spot or reserved price that is not below
  on-demand is dropped (with a note) rather than shipped.

Price conventions (USD per hour for the whole instance, Linux):

* AWS (aws_gpu_prices_2025-11-30.csv, ec2instances.info data): on_demand = `ondemand`;
  reserved_1y / reserved_3y = Standard reserved instance, NO upfront, effective hourly
  (`reserved_yrTerm1Standard.noUpfront`, `reserved_yrTerm3Standard.noUpfront`); spot = `spot_avg`.
  spot_interruption_bucket = the file's `pct_interrupt` (same snapshot as the spot price); when that is
  empty, the AWS Spot Advisor bucket (aws_spot_advisor_gpu_2025-06-28.csv, Linux row) is used and the
  offer's extra.spot_bucket_source says so.
* GCP (gcp_gpu_vms_2026-05-20.csv, SkyPilot-format catalog): the VM row of an accelerator-optimized
  machine type (a2/a3/g2) prices only the host (vCPU + RAM; e.g. a3-highgpu-8g = 9.46 USD/h in
  us-central1, far below any 8xH100 price) and the GPUs sit on separate accelerator-only rows (empty
  InstanceType) per zone and GPU count. So instance price = host row + accelerator row for the machine's
  GPU count in the same zone (checked equal to count x the 1-GPU row). Spot likewise. No reserved
  (committed-use) prices: not in any public data file here. No interruption bucket: GCP publishes none.
  Accelerator SKUs judged unreliable are skipped (see GCP_SUSPECT_RATIO): the file has per-region GPU
  on-demand prices less than half of the same GPU elsewhere (e.g. H100 4.20 USD/GPU-h in us-central1 vs
  9.80 in us-east4 and 12.74 in europe-west4; A100-80GB 1.85 in us-central1 with spot 1.96 above it),
  which look like discounted (committed-use / flex) SKUs picked up as on-demand.
* Azure (azure_gpu_vms_2026-05-20.csv, SkyPilot-format): on_demand = Price, spot = SpotPrice. No
  reserved prices and no interruption bucket (no public data). Fractional-GPU sizes are skipped.
* Lambda (lambda_gpu_vms_2026-05-07.csv, SkyPilot-format): on_demand only (Lambda has no spot or
  reserved tier in the data). The catalog lists every type in every region at one price, so each type is
  one offer with region "any" and the regions listed in extra.regions.

Spot interruption buckets are monthly interruption frequencies; fleetwise turns them into an hourly
hazard in fleetwise.catalog.records (bucket midpoint, constant hazard over a 730-hour month).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
from collections import defaultdict
from pathlib import Path

import yaml

# --------------------------------------------------------------------------------------------------
# Input files and their upstream origin (as described in ../shared/data/README.md)

AWS_FILE = "aws_gpu_prices_2025-11-30.csv"
AWS_AS_OF = "2025-11-30"
AWS_ORIGIN = "public ec2instances.info data, Linux, USD/h"
ADVISOR_FILE = "aws_spot_advisor_gpu_2025-06-28.csv"
ADVISOR_AS_OF = "2025-06-28"
ADVISOR_ORIGIN = "AWS Spot Advisor feed, alexei-led/spotinfo copy, Apache-2.0"
P5_HISTORY_FILE = "aws_p5_48xlarge_ondemand_daily.csv"
GCP_FILE = "gcp_gpu_vms_2026-05-20.csv"
GCP_AS_OF = "2026-05-20"
AZURE_FILE = "azure_gpu_vms_2026-05-20.csv"
AZURE_AS_OF = "2026-05-20"
LAMBDA_FILE = "lambda_gpu_vms_2026-05-07.csv"
LAMBDA_AS_OF = "2026-05-07"
SKYPILOT_ORIGIN = "SkyPilot-format catalog, GPU rows"

PREFERRED_REGIONS = {
    "aws": ["us-east-1", "us-west-2", "eu-west-1"],
    "gcp": ["us-central1", "us-east4", "europe-west4"],
    "azure": ["eastus", "westus3", "westeurope"],
}
# A second choice used only when a type is absent (or unusable) in the preferred region it stands in for.
REGION_ALTERNATES = {
    "gcp": {"us-east4": "us-east1"},
    "azure": {"eastus": "eastus2", "westus3": "westus2"},
}


def excluded_region(region: str) -> bool:
    """AWS GovCloud and Local Zones (e.g. us-east-1-atl-1) are not general-purpose regions."""
    return region.startswith("us-gov-") or region.count("-") >= 4

# --------------------------------------------------------------------------------------------------
# The curated instance types: instance type -> (catalog GPU id, GPU count, note)

AWS_TYPES: dict[str, tuple[str, int, str]] = {
    "p5.48xlarge": ("h100-sxm", 8, ""),
    "p5.4xlarge": ("h100-sxm", 1, "Single-GPU p5 size (1x H100 SXM)."),
    "p4d.24xlarge": ("a100-40gb", 8, ""),
    "p4de.24xlarge": ("a100-80gb", 8, ""),
    "p5en.48xlarge": ("h200", 8, "No p5e.48xlarge rows in the snapshot; p5en is the H200 type listed."),
    "p6-b200.48xlarge": ("b200", 8, ""),
    "g5.xlarge": ("a10g", 1, ""),
    "g5.12xlarge": ("a10g", 4, ""),
    "g5.48xlarge": ("a10g", 8, ""),
    "g6.xlarge": ("l4", 1, ""),
    "g6.12xlarge": ("l4", 4, ""),
    "g6.48xlarge": ("l4", 8, ""),
    "g6e.xlarge": ("l40s", 1, ""),
    "g6e.12xlarge": ("l40s", 4, ""),
    "g6e.48xlarge": ("l40s", 8, ""),
}
# Expected GPU_model text and GPU memory per GPU (GiB) in the AWS file, to catch a wrong mapping.
AWS_GPU_CHECK = {
    "h100-sxm": ("H100", 80),
    "a100-40gb": ("A100", 40),
    "a100-80gb": ("A100", 80),
    "h200": ("H200", 141),
    "b200": ("B200", 180),
    "a10g": ("A10G", 24),
    "l4": ("L4", 24),
    "l40s": ("L40S", 48),
}

# GCP machine type -> (catalog GPU id, GPU count, accelerator name on the accelerator-only rows, note)
GCP_TYPES: dict[str, tuple[str, int, str, str]] = {
    **{f"a2-highgpu-{n}g": ("a100-40gb", n, "A100", "") for n in (1, 2, 4, 8)},
    **{f"a2-ultragpu-{n}g": ("a100-80gb", n, "A100-80GB", "") for n in (1, 2, 4, 8)},
    "a3-highgpu-8g": ("h100-sxm", 8, "H100", ""),
    "a3-megagpu-8g": ("h100-sxm", 8, "H100-MEGA", "H100 SXM with extra GPUDirect-TCPXO NICs (A3 Mega)."),
    "a3-ultragpu-8g": ("h200", 8, "H200", ""),
    "a4-highgpu-8g": ("b200", 8, "B200", ""),
    "g2-standard-4": ("l4", 1, "L4", ""),
    "g2-standard-24": ("l4", 2, "L4", ""),
    "g2-standard-48": ("l4", 4, "L4", ""),
    "g2-standard-96": ("l4", 8, "L4", ""),
}
# An accelerator's per-GPU on-demand price in a region is judged unreliable when it is below this
# fraction of the highest price for the same accelerator in any region of the file (real regional
# spreads are well within +-40%), or when its spot price is not below it.
GCP_SUSPECT_RATIO = 0.6

AZ_NOTE_NC_A100 = "NC A100 v4: A100 80GB PCIe (not SXM; no NVLink between the GPUs); mapped to a100-80gb."
AZ_NOTE_NC_H100 = (
    "NC H100 v5: H100 NVL (94 GB HBM3, PCIe form factor) mapped to the catalog's h100-pcie; the NVL part has"
    " more memory and bandwidth than an 80 GB H100 PCIe."
)
AZ_NOTE_A10 = "NVadsA10 v5 full-GPU size (the fractional 1/6, 1/3 and 1/2 GPU sizes are not listed)."
# Azure instance type -> (catalog GPU id, GPU count, note). Fractional NVadsA10 v5 sizes and NC A10 v4
# (whose GPU counts in the file contradict its prices) are left out.
AZURE_TYPES: dict[str, tuple[str, int, str]] = {
    "Standard_ND96isr_H100_v5": ("h100-sxm", 8, "ND H100 v5."),
    "Standard_ND96isr_H200_v5": ("h200", 8, "ND H200 v5."),
    "Standard_ND96amsr_A100_v4": ("a100-80gb", 8, "NDm A100 v4 (A100 80GB SXM)."),
    "Standard_ND96asr_v4": ("a100-40gb", 8, "ND A100 v4 (A100 40GB SXM)."),
    "Standard_NC24ads_A100_v4": ("a100-80gb", 1, AZ_NOTE_NC_A100),
    "Standard_NC48ads_A100_v4": ("a100-80gb", 2, AZ_NOTE_NC_A100),
    "Standard_NC96ads_A100_v4": ("a100-80gb", 4, AZ_NOTE_NC_A100),
    "Standard_NC40ads_H100_v5": ("h100-pcie", 1, AZ_NOTE_NC_H100),
    "Standard_NC80adis_H100_v5": ("h100-pcie", 2, AZ_NOTE_NC_H100),
    "Standard_ND96isr_MI300X_v5": ("mi300x", 8, "ND MI300X v5."),
    "Standard_NV36ads_A10_v5": ("a10", 1, AZ_NOTE_A10),
    "Standard_NV72ads_A10_v5": ("a10", 2, AZ_NOTE_A10),
}

LAMBDA_TYPES: dict[str, tuple[str, int, str]] = {
    "gpu_1x_a10": ("a10", 1, ""),
    "gpu_1x_a100": ("a100-40gb", 1, "A100 40GB PCIe."),
    "gpu_1x_a100_sxm4": ("a100-40gb", 1, ""),
    "gpu_2x_a100": ("a100-40gb", 2, ""),
    "gpu_4x_a100": ("a100-40gb", 4, ""),
    "gpu_8x_a100": ("a100-40gb", 8, ""),
    "gpu_8x_a100_80gb_sxm4": ("a100-80gb", 8, ""),
    "gpu_1x_h100_pcie": ("h100-pcie", 1, ""),
    "gpu_1x_h100_sxm5": ("h100-sxm", 1, ""),
    "gpu_2x_h100_sxm5": ("h100-sxm", 2, ""),
    "gpu_4x_h100_sxm5": ("h100-sxm", 4, ""),
    "gpu_8x_h100_sxm5": ("h100-sxm", 8, ""),
    "gpu_1x_gh200": ("gh200", 1, "GH200 Grace Hopper superchip (96 GB HBM3 GPU with a Grace CPU)."),
    "gpu_1x_b200_sxm6": ("b200", 1, ""),
    "gpu_2x_b200_sxm6": ("b200", 2, ""),
    "gpu_4x_b200_sxm6": ("b200", 4, ""),
    "gpu_8x_b200_sxm6": ("b200", 8, ""),
}


class DataError(RuntimeError):
    """The input files do not look the way this script expects."""


# --------------------------------------------------------------------------------------------------
# helpers


def _num(text: str | None) -> float | None:
    """A positive price, or None for empty / zero / non-numeric cells."""
    if text is None or not str(text).strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"missing input file {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _prices(on_demand: float, reserved_1y=None, reserved_3y=None, spot=None) -> tuple[dict, list[str]]:
    """Tier prices rounded for the YAML; tiers not cheaper than on-demand are dropped with a note."""
    prices = {"on_demand": round(on_demand, 6)}
    notes = []
    for tier, value in (("reserved_1y", reserved_1y), ("reserved_3y", reserved_3y), ("spot", spot)):
        if value is None:
            continue
        if value >= on_demand:
            notes.append(f"{tier} {value:g} in the source is not below on-demand; omitted.")
            continue
        prices[tier] = round(value, 6)
    return prices, notes


def _offer(cloud, region, instance_type, gpu, count, prices, source, as_of, notes, bucket=None, extra=None):
    entry = {
        "id": f"{cloud}/{region}/{instance_type}".lower(),
        "cloud": cloud,
        "region": region,
        "instance_type": instance_type,
        "gpu": gpu,
        "gpu_count": count,
        "price_usd_per_hour": prices,
    }
    if bucket:
        entry["spot_interruption_bucket"] = bucket
    entry["source"] = source
    entry["as_of"] = as_of
    text = " ".join(n for n in notes if n)
    if text:
        entry["notes"] = text
    if extra:
        entry["extra"] = {k: str(v) for k, v in extra.items()}
    return entry


def _choose_regions(cloud: str, available: dict[str, dict], cheapest_key) -> tuple[list[str], str]:
    """Preferred regions that have a usable offer (with alternates), else the cheapest usable region."""
    chosen = []
    for region in PREFERRED_REGIONS[cloud]:
        if region in available:
            chosen.append(region)
        else:
            alt = REGION_ALTERNATES.get(cloud, {}).get(region)
            if alt and alt in available and alt not in chosen:
                chosen.append(alt)
    if chosen:
        return chosen, ""
    if not available:
        return [], ""
    region = min(available, key=cheapest_key)
    return [region], f"Listed in {region} because no preferred region ({', '.join(PREFERRED_REGIONS[cloud])}) has a usable price."


# --------------------------------------------------------------------------------------------------
# AWS


def _p5_history_note(data: Path) -> str:
    path = data / P5_HISTORY_FILE
    if not path.is_file():
        return ""
    rows = [r for r in _read(path) if _num(r.get("price_usd"))]
    rows.sort(key=lambda r: r["timestamp"])
    for before, after in itertools.pairwise(rows):
        if float(after["price_usd"]) < float(before["price_usd"]):
            return (
                f"us-east-1 on-demand was cut from {float(before['price_usd']):g} to {float(after['price_usd']):g}"
                f" USD/h on {after['timestamp'][:10]} ({P5_HISTORY_FILE}); older quotes are stale."
            )
    return ""


def derive_aws(data: Path) -> list[dict]:
    rows = _read(data / AWS_FILE)
    advisor = {}
    for r in _read(data / ADVISOR_FILE):
        if r["os"].lower() == "linux" and r["interruption_label"]:
            advisor[(r["region"], r["instance_type"])] = r["interruption_label"]
    p5_note = _p5_history_note(data)
    by_type: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["instance_type"] in AWS_TYPES and r["os"] == "linux" and not excluded_region(r["region"]):
            by_type[r["instance_type"]][r["region"]] = r

    offers = []
    for itype, (gpu, count, type_note) in AWS_TYPES.items():
        model_text, mem_per_gpu = AWS_GPU_CHECK[gpu]
        usable = {}
        for region, r in by_type.get(itype, {}).items():
            if int(float(r["GPU"])) != count or model_text not in r["GPU_model"]:
                raise DataError(f"{AWS_FILE}: {itype} is {r['GPU']}x {r['GPU_model']}, expected {count}x {model_text}")
            if abs(float(r["GPU_memory"]) / count - mem_per_gpu) > 0.1 * mem_per_gpu:
                raise DataError(f"{AWS_FILE}: {itype} has {r['GPU_memory']} GB GPU memory, expected {count}x{mem_per_gpu}")
            if _num(r["ondemand"]):
                usable[region] = r
        regions, region_note = _choose_regions("aws", usable, lambda reg, usable=usable: float(usable[reg]["ondemand"]))
        if not regions:
            print(f"warning: aws {itype}: no usable rows; skipped", file=sys.stderr)
            continue
        for region in regions:
            r = usable[region]
            prices, notes = _prices(
                _num(r["ondemand"]),
                _num(r["reserved_yrTerm1Standard.noUpfront"]),
                _num(r["reserved_yrTerm3Standard.noUpfront"]),
                _num(r["spot_avg"]),
            )
            source = f"{AWS_FILE} ({AWS_ORIGIN})"
            extra = {}
            bucket = r["pct_interrupt"].strip() or None
            if bucket:
                extra["spot_bucket_source"] = f"{AWS_FILE} pct_interrupt"
            elif (region, itype) in advisor:
                bucket = advisor[(region, itype)]
                source += f"; interruption bucket from {ADVISOR_FILE} ({ADVISOR_ORIGIN})"
                extra["spot_bucket_source"] = f"{ADVISOR_FILE} (as of {ADVISOR_AS_OF})"
            if "spot" not in prices:
                bucket = None
                extra.pop("spot_bucket_source", None)
            if "reserved_1y" not in prices and "reserved_1y" not in " ".join(notes):
                notes.append("No 1-year Standard no-upfront reservation price in the source.")
            if "spot" not in prices and not any("spot" in n for n in notes):
                notes.append("No spot price in the source.")
            extra_notes = [type_note, region_note]
            if itype == "p5.48xlarge" and region == "us-east-1" and p5_note:
                extra_notes.append(p5_note)
            offers.append(
                _offer("aws", region, itype, gpu, count, prices, source, AWS_AS_OF, extra_notes + notes, bucket, extra)
            )
    return offers


# --------------------------------------------------------------------------------------------------
# GCP


def derive_gcp(data: Path) -> list[dict]:
    rows = _read(data / GCP_FILE)
    host: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)  # (type, region) -> zone -> row
    accel: dict[tuple[str, int, str], dict] = {}  # (accel name, count, zone) -> row
    per_gpu_by_region: dict[str, dict[str, tuple[float, float | None]]] = defaultdict(dict)
    for r in rows:
        if r["InstanceType"]:
            host[(r["InstanceType"], r["Region"])][r["AvailabilityZone"]] = r
        else:
            n = int(float(r["AcceleratorCount"]))
            accel[(r["AcceleratorName"], n, r["AvailabilityZone"])] = r
            od = _num(r["Price"])
            if od:
                sp = _num(r["SpotPrice"])
                per_gpu_by_region[r["AcceleratorName"]][r["Region"]] = (od / n, sp / n if sp else None)

    def suspect(name: str, region: str) -> str:
        od, sp = per_gpu_by_region[name][region]
        top_region, (top, _) = max(per_gpu_by_region[name].items(), key=lambda kv: kv[1][0])
        if sp is not None and sp >= 0.9 * od:
            return f"{name} in {region}: spot {sp:.4f} is not clearly below on-demand {od:.4f} USD/GPU-h"
        if od < GCP_SUSPECT_RATIO * top:
            return f"{name} in {region}: on-demand {od:.4f} USD/GPU-h is < {GCP_SUSPECT_RATIO:.0%} of {top:.4f} in {top_region}"
        return ""

    offers = []
    skipped: set[str] = set()
    for mtype, (gpu, count, aname, type_note) in GCP_TYPES.items():
        usable: dict[str, tuple[float, float | None, str]] = {}
        for (t, region), zones in host.items():
            if t != mtype:
                continue
            candidates = []
            for zone, hrow in sorted(zones.items()):
                arow = accel.get((aname, count, zone))
                if arow is None:
                    one = accel.get((aname, 1, zone))
                    if one is None:
                        continue
                    a_od, a_sp = _num(one["Price"]), _num(one["SpotPrice"])
                    a_od = a_od * count if a_od else None
                    a_sp = a_sp * count if a_sp else None
                else:
                    a_od, a_sp = _num(arow["Price"]), _num(arow["SpotPrice"])
                h_od, h_sp = _num(hrow["Price"]), _num(hrow["SpotPrice"])
                if not (h_od and a_od):
                    continue  # host or accelerator on-demand price missing or zero (e.g. a4-highgpu-8g host)
                spot = h_sp + a_sp if (h_sp and a_sp) else None
                candidates.append((h_od + a_od, spot, zone))
            if not candidates:
                continue
            why = suspect(aname, region)
            if why:
                skipped.add(why)
                continue
            usable[region] = min(candidates)
        regions, region_note = _choose_regions("gcp", usable, lambda reg, usable=usable: usable[reg][0])
        if not regions:
            print(f"warning: gcp {mtype}: no usable (host + accelerator) price; skipped", file=sys.stderr)
            continue
        for region in regions:
            od, spot, zone = usable[region]
            prices, notes = _prices(od, spot=spot)
            notes.insert(0, f"Price = host VM row + {count}x {aname} accelerator row ({zone}).")
            source = f"{GCP_FILE} ({SKYPILOT_ORIGIN}; host VM and GPUs priced on separate rows)"
            offers.append(
                _offer("gcp", region, mtype, gpu, count, prices, source, GCP_AS_OF, [type_note, region_note, *notes],
                       extra={"zone": zone, "accelerator": f"{aname} x{count}"})
            )
    for why in sorted(skipped):
        print(f"note: gcp accelerator price judged unreliable, region skipped: {why}", file=sys.stderr)
    return offers


# --------------------------------------------------------------------------------------------------
# Azure


def derive_azure(data: Path) -> list[dict]:
    rows = _read(data / AZURE_FILE)
    by_type: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["InstanceType"] in AZURE_TYPES:
            by_type[r["InstanceType"]][r["Region"]] = r
    offers = []
    for itype, (gpu, count, type_note) in AZURE_TYPES.items():
        usable = {}
        for region, r in by_type.get(itype, {}).items():
            if abs(float(r["AcceleratorCount"]) - count) > 1e-6:
                raise DataError(f"{AZURE_FILE}: {itype} has {r['AcceleratorCount']} GPUs, expected {count}")
            if _num(r["Price"]):
                usable[region] = r
        regions, region_note = _choose_regions("azure", usable, lambda reg, usable=usable: float(usable[reg]["Price"]))
        if not regions:
            print(f"warning: azure {itype}: no usable rows; skipped", file=sys.stderr)
            continue
        for region in regions:
            r = usable[region]
            prices, notes = _prices(_num(r["Price"]), spot=_num(r["SpotPrice"]))
            source = f"{AZURE_FILE} ({SKYPILOT_ORIGIN})"
            offers.append(
                _offer("azure", region, itype, gpu, count, prices, source, AZURE_AS_OF, [type_note, region_note, *notes])
            )
    return offers


# --------------------------------------------------------------------------------------------------
# Lambda


def derive_lambda(data: Path) -> list[dict]:
    rows = _read(data / LAMBDA_FILE)
    by_type: dict[str, dict[float, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["InstanceType"] in LAMBDA_TYPES:
            gpu, count, _ = LAMBDA_TYPES[r["InstanceType"]]
            if abs(float(r["AcceleratorCount"]) - count) > 1e-6:
                raise DataError(f"{LAMBDA_FILE}: {r['InstanceType']} has {r['AcceleratorCount']} GPUs, expected {count}")
            price = _num(r["Price"])
            if price:
                by_type[r["InstanceType"]][price].append(r["Region"])
    offers = []
    for itype, (gpu, count, type_note) in LAMBDA_TYPES.items():
        groups = by_type.get(itype)
        if not groups:
            print(f"warning: lambda {itype}: no usable rows; skipped", file=sys.stderr)
            continue
        single = len(groups) == 1
        for price, regions in sorted(groups.items()):
            regions = sorted(regions)
            region = "any" if single else regions[0]
            prices, notes = _prices(price)
            note = (
                f"Same price in all {len(regions)} regions the source lists; listing is not a capacity guarantee."
                if single else ""
            )
            offers.append(
                _offer("lambda", region, itype, gpu, count, prices, f"{LAMBDA_FILE} ({SKYPILOT_ORIGIN})",
                       LAMBDA_AS_OF, [type_note, note, "No spot or reserved tier in the source.", *notes],
                       extra={"regions": ",".join(regions)})
            )
    return offers


# --------------------------------------------------------------------------------------------------
# output


HEADER = """\
# GENERATED by scripts/derive_offers.py -- do not edit by hand; re-run the script instead:
#   python scripts/derive_offers.py --data ../shared/data/prices --out src/fleetwise/catalog/data/default
# Source: {sources}
# As of: {as_of}
# Prices are USD per hour for the whole instance (Linux).
{conventions}
"""

CONVENTIONS = {
    "aws": (
        "# on_demand = ondemand; reserved_1y / reserved_3y = Standard reserved instance, NO upfront, effective\n"
        "# hourly (reserved_yrTerm1Standard.noUpfront / reserved_yrTerm3Standard.noUpfront); spot = spot_avg.\n"
        "# spot_interruption_bucket = pct_interrupt of the same snapshot (AWS Spot Advisor monthly frequency),\n"
        f"# else the Spot Advisor file {ADVISOR_FILE} (extra.spot_bucket_source says which).\n"
        "# Regions: us-east-1, us-west-2, eu-west-1 where the type exists there."
    ),
    "gcp": (
        "# GCP bills GPUs separately from the VM: price = host VM row + accelerator-only row (same zone, same GPU\n"
        "# count). Spot the same way. No reserved (committed-use) prices and no interruption bucket: not public.\n"
        "# Accelerator rows whose on-demand looks like a discounted SKU (spot not below it, or < 60% of the\n"
        "# same GPU's highest regional price) are skipped, and a4-highgpu-8g (B200) is absent because its host\n"
        "# row has a zero price in the source. Regions: us-central1, us-east4 (else us-east1), europe-west4;\n"
        "# the cheapest usable region otherwise."
    ),
    "azure": (
        "# on_demand = Price, spot = SpotPrice (a spot price not below on-demand is omitted). No reserved prices\n"
        "# and no interruption bucket: not in public data. Fractional-GPU sizes are skipped.\n"
        "# Regions: eastus (else eastus2), westus3 (else westus2), westeurope."
    ),
    "lambda": (
        "# On-demand only (Lambda has no spot; no reserved prices in the source). Each type has one price in\n"
        "# every region listed, so it is one offer with region 'any' (extra.regions lists them)."
    ),
}

FILES = {
    "aws": ([AWS_FILE, ADVISOR_FILE, P5_HISTORY_FILE], AWS_AS_OF, f"{AWS_ORIGIN}; Spot Advisor: {ADVISOR_ORIGIN}"),
    "gcp": ([GCP_FILE], GCP_AS_OF, SKYPILOT_ORIGIN),
    "azure": ([AZURE_FILE], AZURE_AS_OF, SKYPILOT_ORIGIN),
    "lambda": ([LAMBDA_FILE], LAMBDA_AS_OF, SKYPILOT_ORIGIN),
}


class _Dumper(yaml.SafeDumper):
    pass


def write_offers(out: Path, cloud: str, offers: list[dict]) -> Path:
    files, as_of, origin = FILES[cloud]
    path = out / f"offers-{cloud}.yaml"
    header = HEADER.format(sources=f"../shared/data/prices/{', '.join(files)} ({origin})", as_of=as_of,
                           conventions=CONVENTIONS[cloud])
    body = yaml.dump({"offers": offers}, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path


def validate(out: Path, expected: dict[str, list[dict]]) -> None:
    """Load the catalog with fleetwise's loader; raise if an offer is missing or does not validate."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fleetwise.catalog import DATA_DIR, DEFAULT, ENV_VAR, load_catalog

    os.environ.pop(ENV_VAR, None)
    shipped = out.resolve() == (DATA_DIR / DEFAULT).resolve()
    catalog = load_catalog() if shipped else load_catalog(str(out))
    for offers in expected.values():
        for entry in offers:
            offer = catalog.offer(entry["id"])
            if offer.price("on_demand") != entry["price_usd_per_hour"]["on_demand"]:
                raise DataError(f"{entry['id']}: loaded on-demand price differs from the one written")
            if offer.gpu != entry["gpu"]:
                raise DataError(f"{entry['id']}: gpu '{entry['gpu']}' resolved to '{offer.gpu}'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/prices"), help="price snapshot directory")
    parser.add_argument("--out", type=Path, default=Path("src/fleetwise/catalog/data/default"), help="catalog dir")
    parser.add_argument("--no-validate", action="store_true", help="skip loading the result with fleetwise")
    args = parser.parse_args(argv)

    derived = {
        "aws": derive_aws(args.data),
        "gcp": derive_gcp(args.data),
        "azure": derive_azure(args.data),
        "lambda": derive_lambda(args.data),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for cloud, offers in derived.items():
        ids = [o["id"] for o in offers]
        if len(ids) != len(set(ids)):
            raise DataError(f"{cloud}: duplicate offer ids")
        path = write_offers(args.out, cloud, offers)
        print(f"{path}: {len(offers)} offers")
    print(f"total: {sum(len(o) for o in derived.values())} offers")
    if not args.no_validate:
        try:
            validate(args.out, derived)
        except Exception as exc:  # noqa: BLE001 - any failure here means the files are not shippable
            print(f"VALIDATION FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print("validated: the catalog loads with fleetwise.catalog.load_catalog()")
    return 0


if __name__ == "__main__":
    sys.exit(main())
