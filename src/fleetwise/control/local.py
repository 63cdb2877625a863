"""The ``local`` actuator: workers are ``fleetwise emulate`` processes on this machine (the testbed's fleet).

Each worker is started detached (its own session, so it outlives a controller that is killed) with a tag on
its command line, ``--instance-id FLEET.TIER.N``. :meth:`LocalActuator.observe` finds the workers by scanning
the process table for that tag - not from a file the controller writes - so a controller restarted after a
SIGKILL at any line sees exactly the workers that exist: a launch that happened is adopted, one that did not
is made again, and no worker is ever started twice for one slot (the count, not a log, is the intent).

Spot capacity can be made scarce (``spot_availability`` < 1): a spot request is then granted only with that
probability per :meth:`apply`; until granted it is reported ``pending`` (the controller falls back to on-demand
after its grant timeout). The process table is read from ``/proc`` (Linux).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetwise.control.types import PENDING, PROVISIONING, SERVING, TERMINATING, TIERS, FleetPlan, Worker
from fleetwise.emulate.worker import EmulatorConfig
from fleetwise.errors import ActuatorError, ConfigError

TAG_OPTION = "--instance-id"
# Seconds between SIGTERM and SIGKILL for a worker asked to stop: its in-flight requests were drained before,
# so the grace only covers closing sockets.
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class LocalWorkerSpec:
    """What every local worker runs: an emulated worker's configuration, and extra ``fleetwise emulate`` args."""

    config: EmulatorConfig = field(default_factory=EmulatorConfig)
    extra_args: tuple[str, ...] = ()

    def argv(self, port: int, tag: str, seed: int) -> list[str]:
        c = self.config
        args = [sys.executable, "-m", "fleetwise", "emulate", "--model", c.model, "--gpu", c.gpu,
                "--gpus", str(c.gpus), "--precision", c.precision, "--engine", c.engine,
                "--time-scale", f"{c.time_scale:g}", "--cold-start-s", f"{c.cold_start_s:g}",
                "--port", str(port), "--seed", str(seed), TAG_OPTION, tag]
        if c.max_num_seqs:
            args += ["--max-num-seqs", str(c.max_num_seqs)]
        return args + list(self.extra_args)


@dataclass
class _Proc:
    pid: int
    tag: str
    port: int
    started: float


@dataclass
class LocalActuator:
    """Starts and stops ``fleetwise emulate`` worker processes for one pool (see the module docstring)."""

    spec: LocalWorkerSpec = field(default_factory=LocalWorkerSpec)
    fleet: str = "fw"
    pool: str = "local"
    host: str = "127.0.0.1"
    spot_availability: float = 1.0
    log_dir: Path | None = None
    seed: int = 0
    name: str = "local"
    launches: list[str] = field(default_factory=list)  # every tag this actuator started (tests count them)
    _pending: dict[str, float] = field(default_factory=dict)  # spot requests not granted yet: tag -> asked at
    _stopping: dict[int, float] = field(default_factory=dict)  # pid -> when SIGTERM was sent
    _rng: random.Random = field(default_factory=random.Random)
    _client: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.spot_availability <= 1.0:
            raise ConfigError("spot availability must be within [0, 1]")
        if "." in self.fleet or not self.fleet:
            raise ConfigError(f"fleet tag '{self.fleet}' must be non-empty and contain no '.'")
        self._rng.seed(self.seed)

    # -- observe ---------------------------------------------------------------------------------------
    def processes(self) -> list[_Proc]:
        """This fleet's worker processes, from the process table."""
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:  # exited while we looked
                continue
            started = _start_time(int(entry.name))
            proc = _parse(argv, int(entry.name), started, self.fleet)
            if proc is not None and not _zombie(proc.pid):
                out.append(proc)
        return out

    def observe(self) -> list[Worker]:
        now = time.time()
        workers = [self._worker(p) for p in self.processes()]
        workers += [Worker(tag, self.pool, tag.split(".")[1], PENDING, "", t) for tag, t in self._pending.items()]
        self._reap(now)
        return workers

    def _worker(self, p: _Proc) -> Worker:
        tier = p.tag.split(".")[1]
        url = f"http://{self.host}:{p.port}"
        if p.pid in self._stopping:
            state = TERMINATING
        else:
            state = SERVING if self._healthy(url) else PROVISIONING
        return Worker(p.tag, self.pool, tier, state, url, p.started)

    def _healthy(self, url: str) -> bool:
        import httpx

        if self._client is None:  # one client: a new one per call costs more than the request
            self._client = httpx.Client(timeout=0.5)
        try:
            return self._client.get(url + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    # -- apply -----------------------------------------------------------------------------------------
    def apply(self, plan: FleetPlan) -> None:
        procs = self.processes()
        for p in procs:
            if p.tag in plan.remove:
                self._stop(p)
        for tag in list(self._pending):
            if tag in plan.remove:
                del self._pending[tag]
        taken = {p.tag for p in procs} | set(self._pending)
        for (pool, tier), want in plan.desired.items():
            if pool != self.pool or tier not in TIERS:
                continue
            have = [p for p in procs if p.tag.split(".")[1] == tier and p.tag not in plan.remove
                    and p.tag not in plan.draining and p.pid not in self._stopping]
            have_pending = [t for t in self._pending if t.split(".")[1] == tier and t not in plan.draining]
            self._grant(tier, have_pending)
            missing = want - len(have) - len(have_pending)
            for _ in range(max(0, missing)):
                tag = self._next_tag(tier, taken)
                taken.add(tag)
                if tier == "spot" and self._rng.random() >= self.spot_availability:
                    self._pending[tag] = time.time()
                else:
                    self._launch(tag)

    def _grant(self, tier: str, pending: Sequence[str]) -> None:
        """Spot requests still waiting get another chance at capacity."""
        for tag in pending:
            if self._rng.random() < self.spot_availability:
                del self._pending[tag]
                self._launch(tag)

    def _next_tag(self, tier: str, taken: set[str]) -> str:
        n = 1 + max((int(t.split(".")[2]) for t in taken if t.split(".")[1] == tier), default=0)
        return f"{self.fleet}.{tier}.{n}"

    def _launch(self, tag: str) -> None:
        port = _free_port(self.host)
        seed = self.seed * 100_003 + int(tag.split(".")[2]) * 7 + TIERS.index(tag.split(".")[1])
        log = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{tag}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            subprocess.Popen(self.spec.argv(port, tag, seed), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ActuatorError(f"local actuator: cannot start worker {tag}: {exc}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.launches.append(tag)

    def _stop(self, p: _Proc) -> None:
        if p.pid in self._stopping:
            return
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        self._stopping[p.pid] = time.time()

    def _reap(self, now: float) -> None:
        """SIGKILL workers that outlived their grace; forget the ones that are gone."""
        for pid, since in list(self._stopping.items()):
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                del self._stopping[pid]
            elif now - since > STOP_GRACE_S:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    del self._stopping[pid]

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """Terminate every worker of this fleet and wait for them to exit (tests, testbed shutdown)."""
        self._pending.clear()
        for p in self.processes():
            self._stop(p)
        deadline = time.time() + timeout_s
        while self.processes() and time.time() < deadline:
            time.sleep(0.05)
        for p in self.processes():
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _parse(argv: list[bytes], pid: int, started: float, fleet: str) -> _Proc | None:
    """The worker a command line belongs to, if it is one of this fleet's."""
    try:
        i = argv.index(TAG_OPTION.encode())
        tag = argv[i + 1].decode()
        port = int(argv[argv.index(b"--port") + 1])
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    parts = tag.split(".")
    if len(parts) != 3 or parts[0] != fleet or parts[1] not in TIERS or not parts[2].isdigit():
        return None
    return _Proc(pid, tag, port, started)


def _start_time(pid: int) -> float:
    """When a process started (epoch seconds): field 22 of /proc/PID/stat (clock ticks after boot) + boot time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return time.time()


def _zombie(pid: int) -> bool:
    """An exited child not yet reaped by its parent (it holds no port and serves nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].startswith(("Z", "X"))


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
