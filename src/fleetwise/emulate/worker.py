"""One emulated worker: an engine of a replica, its cold start, its metrics, its spot notice and injected faults.

The HTTP layer (:mod:`fleetwise.emulate.app`) only parses and renders; everything a worker *is* lives here so a
user (or a test) can drive it from Python without a server.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetwise.emulate.engine import EmulatedEngine, EmuRequest, EngineLimits
from fleetwise.emulate.tokens import OutputLengths
from fleetwise.errors import ConfigError

NOTICE_KINDS = ("aws", "gcp", "azure")
# Real clouds' notice lengths: AWS two minutes; GCP 30 s; Azure Scheduled Events at least 30 s before a spot
# eviction. The default follows AWS, the longest and the one the simulator assumes.
DEFAULT_NOTICE_S = 120.0


@dataclass(frozen=True)
class EmulatorConfig:
    """What an emulated worker serves and how fast its clock runs.

    Attributes:
        model: catalog model name or alias (a Hugging Face id resolves).
        gpu: GPU type of the replica.
        gpus: GPUs of the replica; one worker is one engine, so ``gpus`` equals the tensor-parallel degree.
        precision: weight/activation precision (bf16, fp8, ...).
        engine: engine profile (vllm, sglang, trtllm, or a profile .yaml) - the same as ``fleetwise simulate``.
        time_scale: the emulated clock runs this many times faster than the wall clock.
        cold_start_s: emulated seconds from start until ``/health`` answers 200 and requests are served.
        max_num_seqs: batch cap (vLLM's ``--max-num-seqs``); default: the engine profile's.
        seed: seed of the drawn output lengths.
        served_model_name: the id in ``/v1/models`` (default: the catalog name); requests may also use the
            model's Hugging Face id or aliases.
    """

    model: str = "llama-3.1-8b"
    gpu: str = "h100"
    gpus: int = 1
    precision: str = "fp8"
    engine: str = "vllm"
    time_scale: float = 1.0
    cold_start_s: float = 0.0
    max_num_seqs: int | None = None
    seed: int = 0
    served_model_name: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ConfigError(f"time scale must be a finite number > 0 (got {self.time_scale:g})")
        if not (math.isfinite(self.cold_start_s) and self.cold_start_s >= 0):
            raise ConfigError(f"cold start must be >= 0 s (got {self.cold_start_s:g})")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ConfigError("max_num_seqs must be >= 1")
        if self.gpus < 1:
            raise ConfigError("gpus must be >= 1")


@dataclass
class Faults:
    """Faults injected at run time (``POST /admin/config``): slower steps, errors, slow starts."""

    latency_scale: float = 1.0
    error_rate: float = 0.0
    error_status: int = 500
    slow_start_s: float = 0.0  # emulated seconds added before a request enters the engine


@dataclass
class Notice:
    """A spot interruption notice: given at ``given_unix``, the machine is reclaimed at ``reclaim_unix``."""

    kind: str
    notice_s: float  # emulated seconds
    given_unix: float
    reclaim_unix: float  # wall-clock seconds (the notice lasts notice_s / time_scale real seconds)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Worker:
    """An emulated inference worker (one engine). Start it inside a running event loop."""

    def __init__(self, config: EmulatorConfig, *, name: str = "0",
                 on_reclaim: Callable[[], None] | None = None) -> None:
        from fleetwise.catalog import load_catalog
        from fleetwise.emulate.metrics import EngineMetrics
        from fleetwise.perf.replica import replica_from_names
        from fleetwise.sim.setup import engine_spec

        self.config = config
        cat = load_catalog()
        replica = replica_from_names(config.model, config.gpu, config.gpus, None, config.precision, config.engine,
                                     catalog=cat, max_batch=config.max_num_seqs)
        spec = engine_spec(replica)
        self.replica = replica
        self.model_id = config.served_model_name or replica.model.id
        self.model_names = {self.model_id, replica.model.id, replica.model.hf_id, *replica.model.aliases}
        self.max_context = spec.max_context
        self.frontend_s = spec.frontend_s
        self.limits = EngineLimits(spec.step_model, spec.max_batch, spec.max_num_tokens, spec.kv_capacity_tokens,
                                   spec.kv_block_tokens, spec.max_context)
        self.name = name
        self.metrics = EngineMetrics(self.model_id, "0", spec.max_context, gauges=self._gauges)
        self.engine = EmulatedEngine(self.limits, time_scale=config.time_scale, name=name,
                                     on_step=self.metrics.step, on_finish=self._finished)
        self.lengths = OutputLengths(config.seed)
        self.faults = Faults()
        self.notice: Notice | None = None
        self.reclaimed = False
        self._fault_rng = random.Random(config.seed + 1)
        self._on_reclaim = on_reclaim
        self._ready_at = math.inf
        self._next_id = 0
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready_at = loop.time() + self.config.cold_start_s / self.config.time_scale
        self.engine.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.engine.stop()

    @property
    def ready(self) -> bool:
        return asyncio.get_running_loop().time() >= self._ready_at and not self.reclaimed

    def scaled(self, emulated_s: float) -> float:
        """Real seconds of an emulated duration."""
        return emulated_s / self.config.time_scale

    # -- requests --------------------------------------------------------------------------------------
    def new_request(self, prompt_tokens: int, max_tokens: int, min_tokens: int, ignore_eos: bool) -> EmuRequest:
        """A request sized by the worker's rules (not yet submitted)."""
        self._next_id += 1
        out = self.lengths.draw(max_tokens, min_tokens, ignore_eos)
        return EmuRequest(self._next_id, prompt_tokens, out, self.limits.kv_block_tokens, max_tokens)

    def injected_error(self) -> int | None:
        """The HTTP status of an injected failure for this request, if one is drawn."""
        f = self.faults
        if f.error_rate > 0 and self._fault_rng.random() < f.error_rate:
            return f.error_status
        return None

    async def submit(self, req: EmuRequest, received: float | None = None) -> None:
        """Hand a request to the engine once the frontend's latency (and any injected slow start) has passed
        since it was ``received`` (loop time): the real HTTP parsing and validation count as part of the
        modelled frontend time, as they are part of a real server's."""
        loop = asyncio.get_running_loop()
        spent = loop.time() - received if received is not None else 0.0
        delay = self.scaled(self.frontend_s + self.faults.slow_start_s) - spent
        if delay > 0:
            await asyncio.sleep(delay)
        self.engine.submit(req)

    def _finished(self, req: EmuRequest) -> None:
        fe = self.frontend_s
        self.metrics.finished(reason=req.reason, prompt_tokens=req.prompt_tokens, generation_tokens=req.generated,
                              max_tokens=req.max_tokens, queue_s=req.admitted_s - req.arrival_s,
                              ttft_s=req.first_s - req.arrival_s + fe, e2e_s=req.finish_s - req.arrival_s + fe,
                              prefill_s=req.first_s - req.admitted_s, decode_s=req.finish_s - req.first_s)

    def _gauges(self) -> tuple[int, int, float]:
        e = self.engine
        return e.running, len(e.waiting), e.kv_usage()

    # -- run-time configuration ------------------------------------------------------------------------
    def configure(self, **changes) -> Faults:
        """Change injected faults; unknown or out-of-range fields raise :class:`ConfigError`."""
        checks = {
            "latency_scale": lambda v: isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 1000,
            "error_rate": lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
            "error_status": lambda v: isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599,
            "slow_start_s": lambda v: isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 3600,
        }
        for key, value in changes.items():
            if key not in checks:
                raise ConfigError(f"unknown setting '{key}' (one of {', '.join(checks)})")
            if isinstance(value, bool) or not checks[key](value):
                raise ConfigError(f"invalid value for '{key}': {value!r}")
        for key, value in changes.items():
            setattr(self.faults, key, value)
        self.engine.latency_scale = float(self.faults.latency_scale)
        return self.faults

    # -- spot interruption -----------------------------------------------------------------------------
    def interrupt(self, notice_s: float = DEFAULT_NOTICE_S, kind: str = "aws") -> Notice:
        """Give a spot notice: keep serving for ``notice_s`` emulated seconds, then be reclaimed."""
        if kind not in NOTICE_KINDS:
            raise ConfigError(f"unknown notice kind '{kind}' (one of {', '.join(NOTICE_KINDS)})")
        if not (isinstance(notice_s, (int, float)) and not isinstance(notice_s, bool) and math.isfinite(notice_s)
                and 0 <= notice_s <= 86400):
            raise ConfigError("notice_s must be a number of seconds within [0, 86400]")
        if self.notice is not None:
            return self.notice
        real = self.scaled(notice_s)
        now = time.time()
        self.notice = Notice(kind, float(notice_s), now, now + real)
        task = asyncio.get_running_loop().create_task(self._reclaim_after(real))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self.notice

    async def _reclaim_after(self, real_s: float) -> None:
        await asyncio.sleep(real_s)
        await self.reclaim()

    async def reclaim(self) -> None:
        """The machine is taken: every open request and connection ends now."""
        self.reclaimed = True
        await self.engine.stop()
        if self._on_reclaim is not None:
            self._on_reclaim()

    def aws_instance_action(self) -> dict | None:
        """EC2 metadata ``spot/instance-action``: None (404) until a notice, then action and UTC time."""
        if self.notice is None:
            return None
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.notice.reclaim_unix))
        return {"action": "terminate", "time": when}

    def gcp_preempted(self) -> str:
        """GCE metadata ``instance/preempted``: TRUE once the preemption notice is given."""
        return "TRUE" if self.notice is not None else "FALSE"

    def azure_scheduled_events(self) -> dict:
        """Azure IMDS Scheduled Events: a ``Preempt`` event for this VM once the notice is given."""
        if self.notice is None:
            return {"DocumentIncarnation": 0, "Events": []}
        return {"DocumentIncarnation": 1, "Events": [{
            "EventId": self.notice.event_id, "EventType": "Preempt", "ResourceType": "VirtualMachine",
            "Resources": [f"fleetwise-emulate-{self.name}"], "EventStatus": "Scheduled",
            "NotBefore": email.utils.formatdate(self.notice.reclaim_unix, usegmt=True),
            "Description": "Spot eviction (emulated)", "EventSource": "Platform", "DurationInSeconds": -1}]}
