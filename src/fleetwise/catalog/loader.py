"""Read catalog YAML files into records, reporting bad entries as one line: file, entry, field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fleetwise.catalog import schema
from fleetwise.errors import CatalogError


@dataclass
class RawEntries:
    """Validated entries of each section, keyed by id, remembering which file each came from."""

    gpus: dict[str, schema.GPUEntry] = field(default_factory=dict)
    models: dict[str, schema.ModelEntry] = field(default_factory=dict)
    precisions: dict[str, schema.PrecisionEntry] = field(default_factory=dict)
    offers: dict[str, schema.OfferEntry] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (section, id) -> file


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(entry)"
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "missing required field"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    return loc, msg


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise CatalogError(f"not valid YAML ({getattr(exc, 'problem', exc)})", file=str(path), line=line) from None
    except OSError as exc:
        raise CatalogError(f"cannot read ({exc.strerror})", file=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError("top level must be a mapping with gpus/models/precisions/offers", file=str(path))
    unknown = set(data) - set(schema.SECTIONS)
    if unknown:
        raise CatalogError(
            f"unknown section '{sorted(unknown)[0]}' (expected gpus, models, precisions, offers)", file=str(path)
        )
    return data


def load_file(path: Path, into: RawEntries) -> None:
    """Validate one catalog file and add its entries to ``into`` (later files override by id)."""
    data = _read_yaml(path)
    seen: set[tuple[str, str]] = set()
    for section, entry_cls in schema.SECTIONS.items():
        items = data.get(section) or []
        if not isinstance(items, list):
            raise CatalogError(f"section '{section}' must be a list", file=str(path))
        target = getattr(into, section)
        for index, item in enumerate(items):
            label = item.get("id") if isinstance(item, dict) and item.get("id") else f"#{index + 1}"
            if not isinstance(item, dict):
                raise CatalogError("entry must be a mapping", file=str(path), entry=f"{section}[{index + 1}]")
            try:
                entry = entry_cls.model_validate(item)
            except ValidationError as exc:
                loc, msg = _first_error(exc)
                raise CatalogError(msg, file=str(path), entry=str(label), field=loc) from None
            key = (section, entry.id.lower())
            if key in seen:
                raise CatalogError("duplicate id in the same file", file=str(path), entry=entry.id, field="id")
            seen.add(key)
            target[entry.id.lower()] = entry
            into.origin[key] = str(path)


def catalog_files(directory: Path) -> list[Path]:
    """The YAML files of a catalog directory, in a stable order."""
    if not directory.is_dir():
        raise CatalogError("catalog directory does not exist", file=str(directory))
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
