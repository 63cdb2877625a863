"""Capacity allocation: reserved / spot / on-demand counts over time as a MILP, rolling re-optimization with
damping, baselines and the hindsight optimum."""

from fleetwise.allocate.model import Allocation, AllocationRules, Damping, solve
from fleetwise.allocate.offers import CapacityOffer, spot_availability

__all__ = ["Allocation", "AllocationRules", "CapacityOffer", "Damping", "solve", "spot_availability"]
