"""fleetwise: run LLM inference fleets at the lowest cost that still meets their latency SLOs."""

__version__ = "0.1.0"
