"""Schedule files and named strategies."""

from __future__ import annotations

import json

import pytest

from fleetwise.errors import InputFormatError
from fleetwise.sim.strategies import read_schedule, split_spot

SMALL = "aws/us-east-1/p5.4xlarge"  # 1 x H100
BIG = "aws/us-east-1/p5.48xlarge"  # 8 x H100
A100 = "aws/us-east-1/p4d.24xlarge"


def _optimize_json(tmp_path, offers, spot, on_demand, reservations=()):
    path = tmp_path / "opt.json"
    path.write_text(json.dumps({
        "reservations": [{"offer": o, "term": "reserved_3y", "count": n} for o, n in reservations],
        "schedule": {"period_h": 1.0, "offers": offers, "spot": spot, "on_demand": on_demand}}))
    return path


def test_optimize_counts_are_converted_by_gpus(tmp_path):
    path = _optimize_json(tmp_path, [SMALL, BIG], [[0, 0], [1, 0]], [[8, 9], [0, 1]], reservations=[(SMALL, 4)])
    sched = read_schedule(path, ("h100-sxm", 8))
    # eight 1-GPU instances are one 8-GPU instance; nine round up to two; reservations 4/8 -> 1
    assert sched.counts == [{"reserved": 1, "spot": 1, "on_demand": 1}, {"reserved": 1, "spot": 0, "on_demand": 3}]
    assert sched.times_s == [0.0, 3600.0]
    # without an instance type the counts are taken as they are
    assert read_schedule(path).counts[0] == {"reserved": 4, "spot": 1, "on_demand": 8}


def test_optimize_schedule_for_another_gpu_is_rejected(tmp_path):
    path = _optimize_json(tmp_path, [A100], [[0]], [[1]])
    with pytest.raises(InputFormatError, match=r"a100.*--offer aws/us-east-1/p4d.24xlarge"):
        read_schedule(path, ("h100-sxm", 8))


def test_optimize_schedule_with_an_unknown_offer_is_rejected(tmp_path):
    path = _optimize_json(tmp_path, ["aws/nowhere/x"], [[0]], [[1]])
    with pytest.raises(InputFormatError, match="not in the catalog"):
        read_schedule(path, ("h100-sxm", 8))


@pytest.mark.parametrize("n,fraction,reserved,expected", [
    (4, 0.5, 0, {"reserved": 0, "on_demand": 2, "spot": 2}),
    (1, 0.5, 0, {"reserved": 0, "on_demand": 0, "spot": 1}),  # half rounds up
    (5, 0.5, 2, {"reserved": 2, "on_demand": 1, "spot": 2}),
    (3, 0.0, 0, {"reserved": 0, "on_demand": 3, "spot": 0}),
])
def test_split_spot(n, fraction, reserved, expected):
    assert split_spot(n, fraction, reserved) == expected
