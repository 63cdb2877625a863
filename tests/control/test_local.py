"""The controller on real `fleetwise emulate` worker processes: launch, spot notice -> drain -> replace, and
SIGKILL of the controller at random points (no duplicate launches, no orphans, no lost decisions)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time

import httpx
import pytest

from fleetwise.control.controller import ControlConfig, Controller
from fleetwise.control.local import LocalActuator, LocalWorkerSpec
from fleetwise.control.scrape import ScrapeSource
from fleetwise.control.store import SqlStore
from fleetwise.control.types import SERVING
from fleetwise.emulate.worker import EmulatorConfig
from fleetwise.sim.setup import fleet_spec

SCALE = 20.0  # emulated seconds per wall second


@pytest.fixture(scope="module")
def spec():
    return fleet_spec("llama-3.1-8b", "h100", 1, None, "fp8", engine="vllm")


def _fleet(tag: str) -> LocalActuator:
    return LocalActuator(LocalWorkerSpec(EmulatorConfig(time_scale=SCALE)), fleet=tag)


async def _until(c: Controller, ok, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        assert time.monotonic() < deadline, f"timed out; workers: {c.snapshot.workers}"
        await c.step()
        await asyncio.sleep(0.2)


def test_spot_notice_drains_the_worker_and_replaces_it_spot_first(spec, tmp_path):
    act = _fleet(f"notice{os.getpid()}")
    cfg = ControlConfig(mode="active", time_scale=SCALE, interval_s=600, fast_interval_s=10,
                        initial=(("on_demand", 1), ("spot", 1)))
    c = Controller(cfg, act, ScrapeSource(), SqlStore(f"{tmp_path}/c.db"), spec=spec)

    def serving(tier):
        return [w for w in c.snapshot.workers if w.tier == tier and w.state == SERVING and w.id not in c.draining]

    async def scenario():
        await _until(c, lambda: serving("spot") and serving("on_demand"))
        victim = serving("spot")[0]
        async with httpx.AsyncClient() as client:
            await client.post(victim.url + "/admin/interrupt", json={"notice_s": 100, "kind": "aws"}, timeout=5)
        await _until(c, lambda: victim.id in c.draining)
        await _until(c, lambda: serving("spot") and serving("spot")[0].id != victim.id)  # replacement serves
        await _until(c, lambda: all(w.id != victim.id for w in c.snapshot.workers))  # drained, then removed
        return victim

    try:
        victim = asyncio.run(scenario())
        assert c.snapshot.notices_total == 1
        reasons = {d.reason for d in c.store.decisions(1000)}
        assert "spot_notice" in reasons
        assert act.launches.count(victim.id) == 1 and len(act.launches) == 3  # od, spot, its replacement
        assert c.desired == {"reserved": 0, "on_demand": 1, "spot": 1}
    finally:
        act.stop_all()
    assert act.processes() == []


def test_sigkill_at_random_points_never_duplicates_orphans_or_loses(tmp_path):
    """20 controller processes, each SIGKILLed at a random point of its start-up and first steps, on one
    fleet and one store; then one runs to a steady fleet."""
    tag = f"chaos{os.getpid()}"
    db = tmp_path / "c.db"
    act = _fleet(tag)
    argv = [sys.executable, "-m", "fleetwise", "control", "--mode", "active", "--actuator", "local",
            "--fleet", tag, "--time-scale", f"{SCALE:g}", "--fast-interval", "5", "--interval", "300",
            "--initial", "on_demand=2,spot=1", "--store", str(db), "--port", "0", "--keep-workers"]
    rng = random.Random(7)
    seen_ids: list[int] = []
    try:
        for _ in range(20):
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            tags = [p.tag for p in act.processes()]
            assert len(tags) == len(set(tags)), f"two workers for one slot: {tags}"
            assert len(tags) <= 3, f"more workers than ever desired: {tags}"
            if db.exists():
                ids = [d.id for d in SqlStore(f"sqlite:///{db}").decisions(10_000)]
                assert ids == sorted(ids, reverse=True) and set(seen_ids) <= set(ids)  # none lost
                seen_ids = ids
        last = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                tiers = sorted(p.tag.split(".")[1] for p in act.processes())
                if tiers == ["on_demand", "on_demand", "spot"]:
                    break
                time.sleep(0.3)
            assert tiers == ["on_demand", "on_demand", "spot"]
        finally:
            last.terminate()
            last.wait(15)
        tags = [p.tag for p in act.processes()]
        assert len(tags) == len(set(tags)) == 3  # --keep-workers: the fleet outlives the controller
    finally:
        act.stop_all()
    assert act.processes() == []
