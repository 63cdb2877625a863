"""A real Prometheus on loopback for the testbed: scrapes the workers listed in a file it re-reads every second
(``file_sd_configs``), so workers the controller starts and stops are followed without a reload."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

from fleetwise.atomic import write_atomic
from fleetwise.errors import ConfigError

READY_TIMEOUT_S = 20.0


class LocalPrometheus:
    """``with LocalPrometheus(workdir, scrape_s=1.0) as prom: prom.set_targets([...]); prom.url``."""

    def __init__(self, workdir: str | Path, scrape_s: float = 1.0, binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.scrape_s = scrape_s
        self.binary = binary or shutil.which("prometheus")
        if self.binary is None:
            raise ConfigError("prometheus is not installed (Debian/Ubuntu: apt-get install prometheus)")
        self.targets_file = self.workdir / "targets.json"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @staticmethod
    def available() -> bool:
        return shutil.which("prometheus") is not None

    def set_targets(self, addresses: list[str]) -> None:
        """Scrape these host:port addresses from the next file re-read on."""
        write_atomic(self.targets_file, json.dumps([{"targets": sorted(addresses), "labels": {"job": "workers"}}]))

    def __enter__(self) -> LocalPrometheus:  # noqa: PYI034
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.set_targets([])
        config = self.workdir / "prometheus.yml"
        every = f"{self.scrape_s:g}s"
        config.write_text(f"global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\nscrape_configs:\n"
                          f"  - job_name: workers\n    file_sd_configs:\n      - files: ['{self.targets_file}']\n"
                          "        refresh_interval: 1s\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = (self.workdir / "prometheus.log").open("ab")
        try:
            self.proc = subprocess.Popen([self.binary, f"--config.file={config}",
                                          f"--storage.tsdb.path={self.workdir / 'data'}",
                                          f"--web.listen-address=127.0.0.1:{port}"],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        self.url = f"http://127.0.0.1:{port}"
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise ConfigError(f"Prometheus did not start; see {self.workdir / 'prometheus.log'}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
