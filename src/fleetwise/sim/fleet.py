"""Instances in the simulated fleet: their states, price and billed time, and the engines each one hosts.

States: requested -> provisioning (cold start) -> serving -> draining -> terminated. An instance is billed
from the moment it is requested (the cloud bills the boot and the model load) until it terminates;
reserved instances are billed for the whole run whether used or not (see :mod:`fleetwise.sim.billing`).
A spot instance's ``role`` stays "spot" when its launch fell back to on-demand, so policies count it
against their spot target while it is billed at the on-demand price (``tier``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fleetwise.sim.billing import billed_usd

if TYPE_CHECKING:
    from fleetwise.sim.engine import Engine

# "requested" and "provisioning" are one state here: the cloud bills from the request, and the cold start
# (boot + model load + engine start) runs from it.
PROVISIONING, SERVING, DRAINING, TERMINATED = "provisioning", "serving", "draining", "terminated"
ROLES = ("reserved", "on_demand", "spot")


@dataclass(frozen=True)
class InstanceType:
    """What one instance is: its engines (TP groups) and its price per capacity tier."""

    label: str
    engines: int
    usd_per_hour: dict[str, float]  # role/tier -> USD per instance-hour
    hazard_per_hour: float  # spot interruptions per instance-hour
    cold_start_s: float

    def price(self, tier: str) -> float:
        return self.usd_per_hour[tier]


class InstanceOwner(Protocol):
    """What an instance needs from the fleet that launched it (:class:`fleetwise.sim.lifecycle.Lifecycle`)."""

    itype: InstanceType

    def terminate(self, inst: Instance, t: float) -> None: ...


class Instance:
    """One rented machine."""

    __slots__ = ("end_s", "engines", "id", "owner", "preempted", "ready_s", "replaces", "requested_s", "role",
                 "state", "tier")

    def __init__(self, iid: int, role: str, tier: str, requested_s: float, ready_s: float,
                 owner: InstanceOwner) -> None:
        self.id = iid
        self.role = role
        self.tier = tier
        self.requested_s = requested_s
        self.ready_s = ready_s
        self.end_s: float | None = None
        self.state = PROVISIONING
        self.engines: list[Engine] = []
        self.owner = owner
        self.preempted = False
        self.replaces: Instance | None = None  # the on-demand fallback this spot instance takes over from

    def in_flight(self) -> int:
        return sum(e.slots for e in self.engines)

    def engine_idle(self, now: float) -> None:
        """A draining engine went idle: terminate once all of them are."""
        if self.state == DRAINING and all(not e.slots for e in self.engines):
            self.owner.terminate(self, now)

    def billed_s(self, until: float) -> float:
        end = self.end_s if self.end_s is not None else until
        return max(0.0, min(end, until) - self.requested_s)

    def cost_usd(self, until: float) -> float:
        """USD billed up to ``until`` at the tier it runs in (reservations are billed by the ledger)."""
        return billed_usd(self.billed_s(until), self.owner.itype.price(self.tier))
