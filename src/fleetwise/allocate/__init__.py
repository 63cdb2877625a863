"""Capacity allocation: reserved / spot / on-demand counts over time as a MILP, rolling re-optimization with
damping, baselines and the hindsight optimum; :func:`optimize` runs the whole of ``fleetwise optimize``."""

from fleetwise.allocate.model import Allocation, AllocationRules, Damping, solve
from fleetwise.allocate.offers import CapacityOffer, spot_availability
from fleetwise.allocate.optimize import OptimizeResult, optimize

__all__ = ["Allocation", "AllocationRules", "CapacityOffer", "Damping", "OptimizeResult", "optimize", "solve",
           "spot_availability"]
