"""How far a prediction is from the data its engine profile was fitted on: measured, interpolated, extrapolated.

A profile names the calibration points file it was fitted on (``fitted_on``). Coverage is read from that file
each time it changes, so re-fitting a profile on more data widens what counts as measured without code
changes. The levels, for a (model, GPU, precision) under one engine:

- ``measured``: the engine's calibration rows include this GPU with this precision on a model of this class;
- ``interpolated``: the GPU, the precision and the model class each have calibration rows, not together;
- ``extrapolated``: the GPU, the precision or the model class has no calibration row at all (or the profile
  names no readable calibration file).

Model classes are what changes the physics the fit has to learn: ``dense``, ``moe`` (mixture of experts) and
``mla`` (DeepSeek's latent attention, always MoE in the catalog).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fleetwise.catalog import Catalog, Model, load_catalog
from fleetwise.errors import FleetwiseError
from fleetwise.perf.profile import EngineProfile

LEVELS = ("measured", "interpolated", "extrapolated")
FILTERS = ("measured", "interpolated", "any")
GOODPUT_TIERS = ("rate_ttft", "rate_itl")
"""fit_error tiers that bound a goodput prediction: goodput is the rate where TTFT or TPOT reaches the SLO."""
HELD_OUT_PREFIX = "held_out_"
"""fit_error keys such as ``held_out_rate_ttft`` hold errors on data left out of the fit (e.g. leave one GPU
out); they are the band of interpolated and extrapolated predictions when a profile records them."""
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


def model_class(model: Model) -> str:
    """'mla', 'moe' or 'dense': the architecture families a profile must have seen to be trusted on a model."""
    if model.attention == "mla":
        return "mla"
    return "moe" if model.moe is not None else "dense"


@dataclass(frozen=True)
class Coverage:
    """What an engine's calibration data contains: (GPU, precision, model class) triples and their parts."""

    triples: frozenset[tuple[str, str, str]]
    source: str

    def has(self, gpu: str, precision: str, cls: str) -> str:
        """The confidence level of a prediction for this GPU, precision and model class."""
        if (gpu, precision, cls) in self.triples:
            return "measured"
        parts = list(zip(*self.triples)) or [(), (), ()]
        if gpu in parts[0] and precision in parts[1] and cls in parts[2]:
            return "interpolated"
        return "extrapolated"


def _points_files(fitted_on: str) -> list[Path]:
    """The CSV files a ``fitted_on`` string names, resolved against the working directory, then the project."""
    found = []
    for token in re.findall(r"[^\s,;+()]+\.csv", fitted_on):
        path = Path(token)
        for candidate in (path, _PROJECT_ROOT / path) if not path.is_absolute() else (path,):
            if candidate.is_file():
                found.append(candidate.resolve())
                break
    return found


def _resolve(cat: Catalog, kind: str, name: str) -> str | Model | None:
    try:
        return cat.model(name) if kind == "model" else getattr(cat, kind)(name).id
    except FleetwiseError:
        return None  # a row naming something the catalog lacks widens no coverage


@lru_cache(maxsize=8)
def _read_triples(path: str, mtime: float, engine: str, catalog: str | None) -> frozenset[tuple[str, str, str]]:
    cat = load_catalog(catalog)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    mine = [r for r in rows if (r.get("engine") or "").strip().lower() == engine.lower()]
    triples = set()
    for row in mine or rows:  # a file without this engine's name is the profile's own data
        model = _resolve(cat, "model", row.get("model") or "")
        gpu = _resolve(cat, "gpu", row.get("gpu") or "")
        precision = _resolve(cat, "precision", row.get("precision") or "")
        if model is not None and gpu and precision:
            triples.add((gpu, precision, model_class(model)))
    return frozenset(triples)


def profile_coverage(profile: EngineProfile, catalog: str | None = None) -> Coverage:
    """What the profile was calibrated on: the coverage it recorded when it was fitted (``coverage``:
    'gpu/precision/class' triples, written by ``fleetwise calibrate``), else the calibration file(s) its
    ``fitted_on`` names; empty when it has neither."""
    recorded = (profile.coverage or {}).get("gpu_precision_class")
    if recorded:
        triples = {tuple(item.split("/", 2)) for item in recorded if item.count("/") == 2}
        return Coverage(frozenset(triples), f"the {profile.name} profile's recorded coverage of {profile.fitted_on}")
    triples: set[tuple[str, str, str]] = set()
    files = _points_files(profile.fitted_on or "")
    for path in files:
        try:
            triples |= _read_triples(str(path), path.stat().st_mtime, profile.name, catalog)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
    source = ", ".join(str(p) for p in files) if files else f"no calibration file found for '{profile.fitted_on}'"
    return Coverage(frozenset(triples), source)


def error_band(profile: EngineProfile, level: str) -> tuple[float | None, str]:
    """(relative error, where it comes from) for predictions at a confidence level, or (None, why unknown).

    Measured predictions get the profile's fit error on the goodput tiers (MAPE of TTFT and ITL in rate mode
    on its own fitting data). Interpolated and extrapolated ones get the held-out errors when the profile
    records them (``held_out_*`` keys); otherwise interpolated ones fall back to the in-sample fit error,
    said so, and extrapolated ones have no band.
    """
    held = {k[len(HELD_OUT_PREFIX):]: v for k, v in profile.fit_error.items() if k.startswith(HELD_OUT_PREFIX)}
    fit = {k: v for k, v in profile.fit_error.items() if k in GOODPUT_TIERS}
    held = {k: v for k, v in held.items() if k in GOODPUT_TIERS}
    if level != "measured" and held:
        return max(held.values()), f"{profile.name} held-out MAPE ({', '.join(sorted(held))})"
    if not profile.fitted_on or not fit:
        return None, f"unknown: the {profile.name} profile records no fit on calibration data"
    if level == "extrapolated":
        return None, f"unknown: {profile.name} records no held-out error for data it was not fitted on"
    note = "" if level == "measured" else "; no held-out figure recorded"
    return max(fit.values()), (f"{profile.name} in-sample fit MAPE of {'/'.join(sorted(fit))} on "
                               f"{profile.fitted_on}{note}")


def allowed(level: str, wanted: str) -> bool:
    """Does a prediction at ``level`` pass the ``--confidence`` filter ``wanted``?"""
    if wanted == "any":
        return True
    return LEVELS.index(level) <= LEVELS.index(wanted)
