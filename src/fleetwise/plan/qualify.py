"""What a plan states about each configuration besides cost: its published quality loss, how well the
performance model knows it, and whether a request's filters exclude it.

Quality rule: a precision's published drop for the model (catalog ``quality`` entries) must be at most
``max_quality_drop_pct``; a precision with no published figure for the model is *unknown* and fails any limit.
A precision the request names explicitly (``precisions``) is never excluded for quality: asking for it is the
user's decision, and its figure (or ``unknown``) is still shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.catalog import GPU, Model, Precision
from fleetwise.catalog.records import QualityDelta
from fleetwise.errors import ConfigError
from fleetwise.perf.profile import EngineProfile
from fleetwise.plan.confidence import FILTERS, Coverage, allowed, error_band, model_class


@dataclass(frozen=True)
class Annotation:
    """Quality and confidence of one (model, GPU, precision) under one engine profile."""

    quality: QualityDelta | None
    confidence: str
    error_band: float | None  # relative error of the latency prediction, e.g. 0.13 = +-13%
    error_band_source: str


def annotate(model: Model, gpu: GPU, precision: Precision, profile: EngineProfile, coverage: Coverage) -> Annotation:
    """The quality figure and confidence level of a configuration."""
    level = coverage.has(gpu.id, precision.id, model_class(model))
    band, source = error_band(profile, level)
    return Annotation(precision.quality_for(model.id), level, band, source)


def check_filters(max_quality_drop_pct: float | None, confidence: str) -> None:
    """ConfigError unless the quality limit is a finite number >= 0 (or None) and the confidence filter known."""
    if max_quality_drop_pct is not None and not 0 <= max_quality_drop_pct < float("inf"):
        raise ConfigError(f"max_quality_drop_pct must be a finite number >= 0 (got {max_quality_drop_pct})")
    if confidence not in FILTERS:
        raise ConfigError(f"unknown confidence filter '{confidence}' (one of {', '.join(FILTERS)})")


def exclusion(ann: Annotation, precision: str, named: bool, max_drop: float | None, confidence: str) -> str | None:
    """Why a configuration is left out of the plan, or None when it stays."""
    if not allowed(ann.confidence, confidence):
        return f"confidence {ann.confidence}, the request wants {confidence} or better"
    if named or max_drop is None:
        return None
    if ann.quality is None:
        return (f"{precision} has no published quality figure for this model (unknown); "
                "name it with --precision to include it")
    if ann.quality.drop_pct > max_drop:
        return f"{precision} quality drop {ann.quality.drop_pct:g}% exceeds the {max_drop:g}% limit"
    return None


class Judge:
    """Annotates each (model, GPU, precision) once and says whether the request's filters exclude it."""

    def __init__(self, profile: EngineProfile, coverage: Coverage, named: set[str], max_drop: float | None,
                 confidence: str) -> None:
        self.profile, self.coverage, self.named = profile, coverage, named
        self.max_drop, self.confidence = max_drop, confidence
        self.notes: dict[tuple[str, str, str], Annotation] = {}

    def __call__(self, model: Model, gpu: GPU, precision: Precision) -> tuple[Annotation, str | None]:
        key = (model.id, gpu.id, precision.id)
        if key not in self.notes:
            self.notes[key] = annotate(model, gpu, precision, self.profile, self.coverage)
        ann = self.notes[key]
        return ann, exclusion(ann, precision.id, precision.id in self.named, self.max_drop, self.confidence)
