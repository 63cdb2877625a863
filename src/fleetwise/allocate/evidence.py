"""The evidence behind a reservation: the history it rests on and how steadily that history used it.

A 1- or 3-year reservation is paid every hour of its term, so it beats on-demand only while it is used at
least at its break-even utilization (reserved price / on-demand price). The allocator sizes reservations on
a forecast; this module checks them against the demand actually observed before the decision.

Reservations are stacked as layers of demand: all reserved capacity serves the lowest req/s first, the
reservation with the highest break-even utilization at the bottom (where demand is steadiest: the order
that asks the least of each). A layer from ``lo`` to ``hi`` req/s is used at ``clip(demand - lo, 0, hi -
lo) / (hi - lo)`` in a period. The reservation's last instance (the top ``capacity`` of its layer) is the
one whose purchase is least certain, so its utilization is the one held against break-even.

Warning rule (:data:`MIN_HISTORY_MONTHS_PER_YEAR`, :data:`MIN_DAYS_ABOVE_BREAK_EVEN`): a reservation is
thinly evidenced when the history is shorter than one month per year of the term (30.4 days for 1 year,
91 days for 3 years; AWS Cost Explorer bases its reservation advice on 7-60 days of usage), when its last
instance was used below break-even on average over the history, or when that instance was used at or above
break-even on fewer than 5 of every 7 days (a weekly pattern with two quiet weekend days still passes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fleetwise.allocate.offers import CapacityOffer
from fleetwise.traffic.records import steps_per_day

TERM_DAYS = {"reserved_1y": 365.0, "reserved_3y": 3 * 365.0}
MIN_HISTORY_MONTHS_PER_YEAR = 1.0
"""History a reservation should rest on: this many months (of 365/12 days) per year of the term."""
MIN_DAYS_ABOVE_BREAK_EVEN = 5 / 7
"""Share of the history's days on which the last reserved instance must be used at or above break-even: five
days a week, so that quiet weekends alone do not flag a reservation that pays off over the week."""


@dataclass(frozen=True)
class ReservationEvidence:
    """What observed demand says about one recommended reservation (offer, term, count)."""

    offer: str
    term: str
    count: int
    break_even_utilization: float | None
    """Reserved / on-demand price: the share of hours an instance must be used to pay off (None: no
    on-demand price to compare with)."""
    history_days: float
    """Days of observed demand before the decision (the history the plan was fitted on)."""
    term_days: float
    min_history_days: float
    """History the warning rule asks for this term."""
    layer_rps: tuple[float, float]
    """The slice of demand (req/s) these reserved instances serve, from the bottom of the reserved stack."""
    mean_utilization: float
    """Mean use of the reservation's instances over the history (0..1)."""
    last_instance_utilization: float
    """Mean use of its last instance (the top of its layer) over the history."""
    margin: float | None
    """last_instance_utilization - break_even_utilization: how far observed demand stayed above break-even."""
    days_above_break_even: float
    """Share of the history's days (windows of a day; one window if shorter) on which the last instance's
    utilization was at or above break-even."""
    warnings: tuple[str, ...]

    @property
    def thin(self) -> bool:
        """Whether the evidence is too thin for the term by the module's rule."""
        return bool(self.warnings)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layer_rps"] = list(self.layer_rps)
        out["warnings"] = list(self.warnings)
        out["thin"] = self.thin
        return out


def reservation_evidence(reserved: dict[tuple[str, str], int], offers: list[CapacityOffer],
                         history_rps: np.ndarray, period_s: float) -> list[ReservationEvidence]:
    """Evidence for each reservation held (count > 0), in stacking order, from the demand history.

    Args:
        reserved: (offer id, term) -> count, as an allocation holds them.
        history_rps: observed demand before the decision, one value per period (missing values ignored).
        period_s: length of one period of the history.
    """
    by_id = {o.id: o for o in offers}
    held = [(by_id[oid], term, n) for (oid, term), n in reserved.items() if n > 0]
    held.sort(key=lambda h: -(h[0].break_even_utilization(h[1]) or 0.0))
    history = np.asarray(history_rps, dtype=float)
    history = history[np.isfinite(history)]
    days = len(history) * period_s / 86400.0
    out, lo = [], 0.0
    for offer, term, n in held:
        hi = lo + n * offer.capacity_rps
        out.append(_evidence(offer, term, n, (lo, hi), history, period_s, days))
        lo = hi
    return out


def _evidence(offer: CapacityOffer, term: str, n: int, layer: tuple[float, float], history: np.ndarray,
              period_s: float, days: float) -> ReservationEvidence:
    lo, hi = layer
    be = offer.break_even_utilization(term)
    whole = _utilization(history, lo, hi)
    last = _utilization(history, hi - offer.capacity_rps, hi)
    daily = _window_means(last, steps_per_day(period_s))
    above = float(np.mean(daily >= be - 1e-12)) if be is not None and daily.size else 0.0
    term_days = TERM_DAYS.get(term, 365.0)
    need = MIN_HISTORY_MONTHS_PER_YEAR * term_days / 12  # months of 365/12 days per 365-day year
    last_mean = float(last.mean()) if last.size else 0.0
    return ReservationEvidence(
        offer.id, term, n, be, days, term_days, need, (lo, hi), float(whole.mean()) if whole.size else 0.0,
        last_mean, last_mean - be if be is not None else None, above,
        _warnings(term, days, need, last_mean, above, be))


def _utilization(history: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per-period use (0..1) of the capacity between ``lo`` and ``hi`` req/s when demand fills from zero."""
    return np.clip(history - lo, 0.0, hi - lo) / (hi - lo)


def _window_means(values: np.ndarray, size: int) -> np.ndarray:
    """Means over consecutive windows of ``size`` values (the last may be shorter)."""
    if values.size == 0:
        return values
    starts = np.arange(0, values.size, size)
    return np.add.reduceat(values, starts) / np.diff(np.append(starts, values.size))


def _warnings(term: str, days: float, need: float, last: float, above: float, be: float | None
              ) -> tuple[str, ...]:
    out = []
    years = term[-2:]
    if days < need:
        out.append(f"rests on {history_text(days)} of history; a {years} term asks for at least {need:.0f} days "
                   f"({MIN_HISTORY_MONTHS_PER_YEAR:g} month per year of term)")
    if be is None:
        out.append("no on-demand price to compare with, so no break-even utilization")
    else:
        if last < be:
            out.append(f"its last instance was used {last:.0%} of the time, below break-even ({be:.0%}): at this "
                       "demand it costs more than on-demand")
        if above < MIN_DAYS_ABOVE_BREAK_EVEN - 1e-9:
            out.append(f"its last instance was used at or above break-even ({be:.0%}) on {above:.0%} of the "
                       f"history's days (the rule asks for 5 days in 7, {MIN_DAYS_ABOVE_BREAK_EVEN:.0%})")
    return tuple(out)


def history_text(days: float) -> str:
    """A history length for people: hours under a day, else days."""
    return f"{days * 24:.1f} hours" if days < 1 else f"{days:.1f} days"


def evidence_rule() -> str:
    """The warning rule in one sentence, for output next to the evidence."""
    return (f"a reservation is flagged when its history is shorter than {MIN_HISTORY_MONTHS_PER_YEAR:g} month per "
            "year of term, or its last instance was used below break-even on average, or at or above it on fewer "
            f"than 5 days in 7 ({MIN_DAYS_ABOVE_BREAK_EVEN:.0%})")
