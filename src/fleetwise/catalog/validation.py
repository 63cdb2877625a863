"""Checks shared by every file fleetwise validates: catalogs, points files and engine profiles.

One annotated type per kind of number, so a rule such as "finite and > 0" is written once and every field
of that kind gets it (NaN passes ``x <= 0`` tests and infinity passes ``x > 0``; ``allow_inf_nan=False``
rejects both). One reader turns a missing file or bytes that are not UTF-8 into a one-line error naming
the file and line, and one formatter turns a pydantic ``ValidationError`` into (field, message).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError

from fleetwise.errors import FleetwiseError

PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A finite number > 0: sizes, rates, bandwidths, measured metrics."""
NonNegativeNumber = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite number >= 0: prices, hazards, fixed overheads."""
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
"""A share of something: > 0 and at most 1."""
PositiveInt = Annotated[int, Field(gt=0)]
"""A count >= 1 (models with ``strict=True`` also refuse booleans, floats and strings)."""
NonNegativeInt = Annotated[int, Field(ge=0)]
"""A count >= 0."""


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The dotted field path and a short message of the first error pydantic found."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "(entry)"
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "missing required field"
    elif err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        msg = "unknown field"
    elif err.get("input", "") is None and err["type"].endswith("_type"):
        msg = "needs a value (it is empty)"
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    return loc, msg


def read_text(path: Path, error: type[FleetwiseError]) -> str:
    """The text of a UTF-8 file without its byte-order mark, or ``error`` naming the file (and line)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or exc})", file=str(path)) from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        raise error(message, file=str(path), line=line) from None


def read_yaml_with_nodes(path: Path, error: type[FleetwiseError]):
    """(data, node) of a UTF-8 YAML file: the plain data, and its node tree for :func:`yaml_line`; invalid YAML
    is ``error`` naming the file and line."""
    import yaml

    text = read_text(path, error)
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise error(f"not valid YAML ({getattr(exc, 'problem', None) or exc})", file=str(path),
                    line=mark.line + 1 if mark else None) from None


def yaml_line(node, loc: tuple) -> int | None:
    """The line of the deepest YAML node on a pydantic error's location path."""
    import yaml

    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
