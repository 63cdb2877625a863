"""Read catalog YAML files into records, reporting bad entries as one line: file, entry, field."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fleetwise.catalog import schema
from fleetwise.catalog.validation import first_error, read_text
from fleetwise.errors import CatalogError


@dataclass
class RawEntries:
    """Validated entries of each section, keyed by id, remembering which file each came from."""

    gpus: dict[str, schema.GPUEntry] = field(default_factory=dict)
    models: dict[str, schema.ModelEntry] = field(default_factory=dict)
    precisions: dict[str, schema.PrecisionEntry] = field(default_factory=dict)
    offers: dict[str, schema.OfferEntry] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (section, id) -> file


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """safe_load, except that a key given twice in one mapping is an error (YAML would keep the last). On
    libyaml's parser when PyYAML has it (the catalog parses ~5x faster: it is read by every plan)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a UTF-8 YAML file, turning unreadable, undecodable or invalid YAML into one CatalogError line."""
    text = read_text(path, CatalogError)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or exc
        raise CatalogError(f"not valid YAML ({problem})", file=str(path), line=line) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CatalogError("top level must be a mapping with gpus/models/precisions/offers", file=str(path))
    unknown = set(data) - set(schema.SECTIONS)
    if unknown:
        raise CatalogError(
            f"unknown section '{min(map(str, unknown))}' (expected gpus, models, precisions, offers)",
            file=str(path),
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
                loc, msg = first_error(exc)
                raise CatalogError(msg, file=str(path), entry=str(label), field=loc) from None
            key = (section, entry.id.lower())
            if key in seen:
                raise CatalogError("duplicate id in the same file", file=str(path), entry=entry.id, field="id")
            seen.add(key)
            target[entry.id.lower()] = entry
            into.origin[key] = str(path)


def catalog_files(directory: Path) -> list[Path]:
    """The YAML files of a catalog directory, in a stable order."""
    if directory.is_file():
        raise CatalogError("is a file; a catalog is a directory of YAML files (or 'seed-scenario')",
                           file=str(directory))
    if not directory.is_dir():
        raise CatalogError("catalog directory does not exist", file=str(directory))
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
