"""Instance lifecycle in the fleet simulator: launch (with spot fallback), cold start, drain, spot notice and
reclaim, and the retry-on-spot of fallbacks.

Requested -> provisioning (cold start) -> serving -> draining -> terminated (see :mod:`fleetwise.sim.fleet`).
On a spot notice (a two-minute warning by default) the instance stops taking requests and the drain strategy
decides what happens to the ones it holds:

* ``drain``: keep a decoding request whose remaining tokens fit in the notice; migrate the rest;
* ``migrate``: move all, closest to completion first;
* ``requeue``: restart all from their prompt.

At the reclaim whatever is left is migrated (or requeued under ``requeue``). Requests move through the
:class:`~fleetwise.sim.dispatch.Dispatcher`; money is booked in the :class:`~fleetwise.sim.billing.Ledger`.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from fleetwise.sim.engine import Engine
from fleetwise.sim.events import KILL, NOTICE, READY, EventQueue
from fleetwise.sim.fleet import DRAINING, PROVISIONING, SERVING, TERMINATED, Instance, InstanceType

if TYPE_CHECKING:
    from fleetwise.sim.billing import Ledger
    from fleetwise.sim.core import EngineSpec, RunLog, SimConfig
    from fleetwise.sim.dispatch import Dispatcher

DRAINS = ("drain", "migrate", "requeue")
# 'drain' keeps a request only if its remaining tokens at the current step time fit in this share of the notice:
# the batch shrinks as others leave (steps get faster) but new prompts no longer arrive, so 10% is slack for
# estimation error, not a measured figure.
DRAIN_MARGIN = 0.9


class Lifecycle:
    """Every instance of one run, from launch to termination."""

    def __init__(self, itype: InstanceType, spec: EngineSpec, config: SimConfig, hazard_per_hour: float,
                 rng: random.Random, events: EventQueue, dispatch: Dispatcher, ledger: Ledger, log: RunLog,
                 cap_usd_per_hour: float) -> None:
        self.itype, self.spec, self.cfg = itype, spec, config
        self.hazard = hazard_per_hour
        self.rng = rng  # spot losses and fallbacks
        self.events, self.dispatch, self.ledger, self.log = events, dispatch, ledger, log
        self.cap_usd_per_hour = cap_usd_per_hour
        self.instances: list[Instance] = log.instances  # every instance ever launched (the log keeps them)
        self.live: list[Instance] = []  # not terminated: what ticks, drains and bills look at
        self._eid = 0
        self._records: dict[int, dict] = {}

    # -- launch and cold start -------------------------------------------------------------------------
    def launch(self, role: str, t: float, warm: bool = False, tier: str | None = None) -> Instance:
        """Request an instance; spot falls back to on-demand when the spot launch is not fulfilled."""
        if tier is None and role == "spot" and ("spot" not in self.itype.usd_per_hour
                                                or self.rng.random() >= self.cfg.spot_availability):
            tier = "on_demand"
            self.log.spot_fallbacks += 1
        elif tier is None:
            tier = role
        ready = t if warm else t + self.itype.cold_start_s
        inst = Instance(len(self.instances), role, tier, t, ready, self)
        self.instances.append(inst)
        self.live.append(inst)
        self.ledger.launched(inst, self.live)
        if tier == "spot" and self.hazard > 0 and self.cfg.preemption_times_s is None:
            kill = t + self.rng.expovariate(self.hazard / 3600.0)
            self.events.push(max(t, kill - self.cfg.warning_s), NOTICE, inst)
        if warm:
            self.ready(inst, t)
        else:
            self.events.push(ready, READY, inst)
        return inst

    def ready(self, inst: Instance, t: float) -> None:
        """The cold start is over: the instance's engines start serving."""
        if inst.state != PROVISIONING:
            return
        inst.state = SERVING
        spec = self.spec
        for _ in range(self.itype.engines):
            e = Engine(self._eid, inst, self.dispatch, spec.step_model, max_batch=spec.max_batch,
                       budget=spec.max_num_tokens, kv_cap=spec.kv_capacity_tokens,
                       classes=len(self.dispatch.classes))
            self._eid += 1
            inst.engines.append(e)
        self.dispatch.engines_up(inst.engines, t)
        old = inst.replaces
        if old is not None and old.state == SERVING:  # a spot instance took over from an on-demand fallback
            self.drain(old, t)

    # -- scale-down ------------------------------------------------------------------------------------
    def drain(self, inst: Instance, t: float) -> None:
        """Scale-down: cancel a provisioning instance, or stop routing to a serving one and let it empty."""
        if inst.state == PROVISIONING:
            self.terminate(inst, t)
        elif inst.state == SERVING:
            inst.state = DRAINING
            self.dispatch.engines_down(inst.engines)
            if not inst.in_flight():
                self.terminate(inst, t)

    def terminate(self, inst: Instance, t: float) -> None:
        inst.state = TERMINATED
        inst.end_s = t
        self.live.remove(inst)
        self.ledger.closed(inst, t)

    def drain_count(self, role: str, count: int, t: float) -> None:
        """Drain ``count`` instances of ``role``: those still provisioning first, then on-demand fallbacks,
        then the least busy."""
        mine = [i for i in self.live if i.role == role and i.state in (PROVISIONING, SERVING)]
        mine.sort(key=lambda i: (i.state == SERVING, i.tier == i.role, i.in_flight()))
        for inst in mine[:count]:
            self.drain(inst, t)

    # -- spot ------------------------------------------------------------------------------------------
    def rebalance(self, t: float) -> None:
        """Give each on-demand fallback of a spot slot one more try at spot per tick; the fallback drains once
        the spot instance serves (otherwise a long run drifts to on-demand prices)."""
        if "spot" not in self.itype.usd_per_hour:
            return
        for old in [i for i in self.live if i.role == "spot" and i.tier == "on_demand" and i.state == SERVING]:
            if any(i.replaces is old for i in self.live):
                continue
            # Both are billed while the spot instance boots: retry only if the budget has room for that.
            if not self._affordable(self.itype.price("spot")):
                continue
            if self.rng.random() < self.cfg.spot_availability:
                new = self.launch("spot", t, tier="spot")
                new.replaces = old

    def notice(self, inst: Instance, t: float) -> None:
        """Two-minute warning: stop routing, apply the drain strategy, request a replacement at once."""
        if inst.state in (TERMINATED,) or inst.preempted:
            return
        inst.preempted = True
        record = {"t_s": t, "instance": inst.id, "state": inst.state, "kept": 0, "migrated": 0, "requeued": 0}
        self.log.preemptions.append(record)
        self._records[inst.id] = record
        was_active = inst.state in (PROVISIONING, SERVING)
        if inst.state == PROVISIONING:
            self.terminate(inst, t)
        elif inst.state in (SERVING, DRAINING):
            inst.state = DRAINING
            self.dispatch.engines_down(inst.engines)
            self._apply_drain(inst, t, record)
            self.events.push(t + self.cfg.warning_s, KILL, inst)
        # A lost retry-on-spot leaves its fallback serving instead. The notified instance is billed until it
        # is reclaimed, so a replacement that would break the budget waits for the policy's next tick.
        if was_active and inst.replaces is None and self._affordable(self.itype.price("on_demand")):
            self.launch(inst.role, t)

    def replay_notice(self, t: float) -> None:
        """A replayed notice takes the oldest spot instance still serving or provisioning."""
        spot = [i for i in self.live if i.tier == "spot" and i.state in (SERVING, PROVISIONING)
                and not i.preempted]
        if spot:
            self.notice(min(spot, key=lambda i: i.requested_s), t)

    def _affordable(self, price_usd_per_hour: float) -> bool:
        """Whether one more instance at this price keeps the fleet within the policy's spend cap."""
        cap = self.cap_usd_per_hour
        return cap == math.inf or self.ledger.usd_per_hour(self.live) + price_usd_per_hour <= cap * (1 + 1e-9)

    def _apply_drain(self, inst: Instance, t: float, record: dict) -> None:
        items = [(left, gen, rid, e) for e in inst.engines for rid, gen, left in e.progress(t)]
        strategy = self.cfg.drain
        if strategy == "migrate":
            items.sort(key=lambda x: x[0])  # closest to completion first
        for left, gen, rid, e in items:
            decoding = rid in e.dec
            if strategy == "drain" and decoding and left * e.estimated_step_s() <= DRAIN_MARGIN * self.cfg.warning_s:
                record["kept"] += 1
                continue
            gen = e.remove(rid, t)
            if strategy == "requeue":
                record["requeued"] += 1
                self.dispatch.requeue(rid, t)
            else:
                record["migrated"] += 1
                self.dispatch.migrate(rid, gen, t, source=inst, had_kv=decoding)
        self.dispatch.offer_queue(t)
        if not inst.in_flight():
            self.terminate(inst, t)

    def kill(self, inst: Instance, t: float) -> None:
        """The reclaim: whatever the instance still holds moves (KV is gone), then it terminates."""
        if inst.state == TERMINATED:
            return
        record = self._records[inst.id]
        for e in inst.engines:
            for rid, _, _ in e.progress(t):
                gen = e.remove(rid, t)
                if self.cfg.drain == "requeue":  # KV is gone: restart, or re-prefill the output the client has
                    record["requeued"] += 1
                    self.dispatch.requeue(rid, t)
                else:
                    record["migrated"] += 1
                    self.dispatch.migrate(rid, gen, t)
            e.version += 1  # cancel its scheduled step
            e.busy_until = -1.0
        self.terminate(inst, t)
        self.dispatch.offer_queue(t)
