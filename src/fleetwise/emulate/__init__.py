"""GPU-free emulated inference workers: vLLM's OpenAI-compatible API and metrics, with latencies from the fleet
simulator's step model under continuous batching, cold starts and spot notices in the clouds' own formats."""

from fleetwise.emulate.serve import Fleet, ServeOptions, WorkerThread, run
from fleetwise.emulate.worker import EmulatorConfig, Worker

__all__ = ["EmulatorConfig", "Fleet", "ServeOptions", "Worker", "WorkerThread", "run"]
