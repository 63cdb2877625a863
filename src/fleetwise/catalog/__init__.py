"""The catalog: GPUs, models, precisions and instance offers, each with its source and as-of date.

A catalog is built from YAML files. The package ships named catalogs under ``catalog/data/``:
``default`` (GPUs, models, precisions and curated AWS/GCP/Azure/Lambda offers) and ``seed-scenario``
(the classic two-instance hybrid-capacity example; its offers replace the default offers). Users add
or override entries by id with directories passed as ``--catalog DIR`` or listed in the
``FLEETWISE_CATALOG`` environment variable (separated by ``os.pathsep``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from fleetwise.catalog.loader import RawEntries, catalog_files, load_file
from fleetwise.catalog.records import GPU, MLA, TIERS, Model, MoE, Offer, Precision
from fleetwise.errors import CatalogError, UnknownNameError, quote_input, some_of

__all__ = [
    "GPU",
    "MLA",
    "TIERS",
    "Catalog",
    "MoE",
    "Model",
    "Offer",
    "Precision",
    "load_catalog",
    "named_catalogs",
    "normalize_name",
]

DATA_DIR = Path(__file__).parent / "data"
DEFAULT = "default"
ENV_VAR = "FLEETWISE_CATALOG"

_MODEL_SUFFIXES = ("-instruct", "-chat", "-hf", "-it", "-base")


def normalize_name(name: str) -> str:
    """Lower-case, and fold spaces/underscores to dashes, so 'H100 SXM' and 'h100_sxm' match."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _model_keys(name: str) -> list[str]:
    """Candidate lookup keys for a model name or Hugging Face id, most specific first."""
    full = normalize_name(name)
    keys = [full]
    short = full.rsplit("/", 1)[-1]
    keys.append(short)
    stripped = short
    for suffix in _MODEL_SUFFIXES:
        stripped = stripped.removesuffix(suffix)
    keys.append(stripped)
    if stripped.startswith("meta-"):
        keys.append(stripped[len("meta-"):])
    return keys


def named_catalogs() -> list[str]:
    """Names of the catalogs shipped in the package."""
    return sorted(p.name for p in DATA_DIR.iterdir() if p.is_dir())


@dataclass
class Catalog:
    """Resolved records with case-insensitive, alias-aware lookup."""

    gpus: dict[str, GPU]
    models: dict[str, Model]
    precisions: dict[str, Precision]
    offers: dict[str, Offer]
    name: str = DEFAULT
    _index: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for section in ("gpus", "models", "precisions", "offers"):
            index: dict[str, str] = {}
            for rid, record in getattr(self, section).items():
                for key in (rid, *getattr(record, "aliases", ())):
                    index.setdefault(normalize_name(key), rid)
                hf_id = getattr(record, "hf_id", None)
                if hf_id:
                    index.setdefault(normalize_name(hf_id), rid)
            self._index[section] = index

    def _lookup(self, section: str, name: str, keys: Iterable[str]) -> str:
        index = self._index[section]
        for key in keys:
            if key in index:
                return index[key]
        raise UnknownNameError(f"unknown {section[:-1]} {quote_input(name)} ({some_of(getattr(self, section), name, section)})")

    def gpu(self, name: str) -> GPU:
        """A GPU by id or alias, e.g. 'H100' or 'A100-SXM4-80GB'."""
        return self.gpus[self._lookup("gpus", name, [normalize_name(name)])]

    def model(self, name: str) -> Model:
        """A model by id, alias or Hugging Face id, e.g. 'meta-llama/Llama-3.1-70B-Instruct'."""
        return self.models[self._lookup("models", name, _model_keys(name))]

    def precision(self, name: str) -> Precision:
        """A precision by id or alias, e.g. 'fp8', 'awq', 'w4a16'."""
        return self.precisions[self._lookup("precisions", name, [normalize_name(name)])]

    def offer(self, name: str) -> Offer:
        """An instance offer by id."""
        return self.offers[self._lookup("offers", name, [normalize_name(name)])]

    def find_offers(
        self,
        *,
        clouds: Sequence[str] = (),
        regions: Sequence[str] = (),
        gpus: Sequence[str] = (),
        tier: str | None = None,
    ) -> list[Offer]:
        """Offers matching every given filter (empty filter = any); GPU names resolve through aliases."""
        gpu_ids = {self.gpu(g).id for g in gpus}
        cloud_set = {c.lower() for c in clouds}
        region_set = {r.lower() for r in regions}
        return [
            offer
            for offer in self.offers.values()
            if (not cloud_set or offer.cloud.lower() in cloud_set)
            and (not region_set or offer.region.lower() in region_set)
            and (not gpu_ids or offer.gpu in gpu_ids)
            and (tier is None or offer.price(tier) is not None)
        ]


def _build(raw: RawEntries, name: str) -> Catalog:
    gpus = {key: entry.to_record() for key, entry in raw.gpus.items()}
    models = {key: entry.to_record() for key, entry in raw.models.items()}
    precisions = {key: entry.to_record() for key, entry in raw.precisions.items()}
    partial = Catalog(gpus=gpus, models=models, precisions=precisions, offers={}, name=name)
    offers = {}
    for key, entry in raw.offers.items():
        try:
            gpu_id = partial.gpu(entry.gpu).id
        except UnknownNameError:
            raise CatalogError(
                f"unknown GPU '{entry.gpu}'", file=raw.origin[("offers", key)], entry=entry.id, field="gpu"
            ) from None
        offers[key] = entry.to_record(gpu_id)
    return Catalog(gpus=gpus, models=models, precisions=precisions, offers=offers, name=name)


def _user_dirs(spec: str | None) -> tuple[str | None, list[Path]]:
    """Split a --catalog value into a shipped catalog name and user directories."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    dirs = [Path(p) for p in env]
    if spec is None:
        return None, dirs
    if not spec.strip():  # Path("") is the working directory: every YAML file under it would load
        raise CatalogError(
            f"empty catalog name (give one of {', '.join(named_catalogs())}, or a directory)", field="catalog"
        )
    if spec in named_catalogs():
        return spec, dirs
    return None, [*dirs, Path(spec)]


def load_catalog(spec: str | None = None) -> Catalog:
    """Load a shipped catalog by name, or the default catalog overlaid with a user directory.

    Args:
        spec: None for the default catalog, a shipped catalog name ('seed-scenario'), or a directory
            whose entries add to or override the default ones by id.
    """
    named, dirs = _user_dirs(spec)
    if not dirs:
        return _load_shipped(named or DEFAULT)
    return _load(named or DEFAULT, tuple(str(d) for d in dirs))


@lru_cache(maxsize=8)
def _load_shipped(named: str) -> Catalog:
    """Shipped catalogs never change while a process runs, so they are parsed once."""
    return _load(named, ())


def _load(named: str, dirs: tuple[str, ...]) -> Catalog:
    raw = RawEntries()
    for path in catalog_files(DATA_DIR / DEFAULT):
        load_file(path, raw)
    if named != DEFAULT:
        raw.offers.clear()  # a named scenario catalog brings its own offers only
        for path in catalog_files(DATA_DIR / named):
            load_file(path, raw)
    for directory in dirs:
        files = catalog_files(Path(directory))
        if not files:
            raise CatalogError("catalog directory has no .yaml files", file=directory)
        for path in files:
            load_file(path, raw)
    return _build(raw, named if not dirs else f"{named}+{len(dirs)} dir(s)")
