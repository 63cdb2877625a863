"""What the simulated fleet costs: one billing formula and the ledger of a run.

Per-second billing at an hourly price (:func:`billed_usd`) is the only formula; everything else here says
which seconds are billed. An instance is billed from its request to its termination at the price of the tier
it runs in (a spot launch that fell back to on-demand pays on-demand); reservations are billed for the whole
run at the most reserved instances alive at once, used or not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetwise.sim.fleet import Instance, InstanceType

SECONDS_PER_HOUR = 3600.0


def billed_usd(seconds: float, usd_per_hour: float) -> float:
    """USD for ``seconds`` of instance time at ``usd_per_hour`` (the one billing formula of the simulator)."""
    return seconds * usd_per_hour / SECONDS_PER_HOUR


class Ledger:
    """The money side of one run: reservations held, instances already closed, spend rates and totals."""

    __slots__ = ("closed_usd", "itype", "reserved_peak")

    def __init__(self, itype: InstanceType) -> None:
        self.itype = itype
        self.closed_usd = 0.0  # non-reserved instances already terminated
        self.reserved_peak = 0  # reservations held: the most reserved instances alive at once

    def launched(self, inst: Instance, live: list[Instance]) -> None:
        """Count a new reserved instance against the reservations held."""
        if inst.role == "reserved":
            self.reserved_peak = max(self.reserved_peak, sum(i.role == "reserved" for i in live))

    def closed(self, inst: Instance, t: float) -> None:
        """Book a terminated instance (reservations are billed for the whole run instead)."""
        if inst.role != "reserved":
            self.closed_usd += inst.cost_usd(t)

    def reserved_usd(self, t: float) -> float:
        """USD of the reservations held, from the start of the run to ``t``."""
        return billed_usd(self.reserved_peak * t, self.itype.price("reserved"))

    def cost_so_far(self, t: float, live: Iterable[Instance]) -> float:
        """USD billed up to ``t``: the reservations for all of it, other instances from request to termination."""
        usd = self.closed_usd + self.reserved_usd(t)
        for inst in live:
            if inst.role != "reserved":
                usd += inst.cost_usd(t)
        return usd

    def usd_per_hour(self, instances: Iterable[Instance]) -> float:
        """What these instances cost per hour, each at its tier."""
        return sum((self.itype.price(i.tier) for i in instances), 0.0)

    def by_tier(self, instances: Iterable[Instance], end_s: float, roles: Iterable[str]) -> dict[str, float]:
        """USD of a finished run per tier (every instance ever launched, billed up to ``end_s``)."""
        out = dict.fromkeys(roles, 0.0)
        out["reserved"] = self.reserved_usd(end_s)  # held all run
        for inst in instances:  # a reserved instance's tier is "reserved"
            if inst.tier != "reserved":
                out[inst.tier] += inst.cost_usd(end_s)
        return out

    def peak_usd_per_hour(self, instances: Iterable[Instance], end_s: float) -> float:
        """The highest spend rate of the run: the reservations held plus the other instances billed at the same
        moment (per-second billing, so an instance cancelled at its launch time costs nothing)."""
        events = []
        for inst in instances:
            stop = min(inst.end_s if inst.end_s is not None else end_s, end_s)
            if inst.tier != "reserved" and stop > inst.requested_s:
                price = self.itype.price(inst.tier)
                events += [(inst.requested_s, 1, price), (stop, 0, -price)]  # at equal times, ends come first
        rate = peak = 0.0
        for _, _, change in sorted(events):
            rate += change
            peak = max(peak, rate)
        return self.reserved_peak * self.itype.price("reserved") + peak
