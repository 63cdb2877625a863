"""The errors fleetwise raises for problems a user can fix.

Exception tree::

    FleetwiseError                 base; str() is one line naming file, entry/line and field
    ├── CatalogError               a catalog file or a catalog lookup is wrong
    │   └── UnknownNameError       a GPU / model / precision / offer name that does not resolve
    ├── InputFormatError           a user data file (POINTS.csv, a trace) is malformed
    ├── ConfigError                options that contradict each other or are out of range
    ├── InfeasibleError            nothing can meet the request (no config fits, SLO impossible)
    │   └── NotApplicableError     a strategy needs a tier no offer prices (a comparison shows it as n/a)
    ├── SolverError                a numerical solver failed
    └── ActuatorError              the fleet could not be changed or read (a worker, cloud or Kubernetes call
                                   failed); the controller records it and retries at its next step

The CLI turns any of them into a single line on stderr and a non-zero exit; everything else is a bug.
"""

from __future__ import annotations


class FleetwiseError(Exception):
    """Base class: a user-fixable problem with the context needed to fix it."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        entry: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.entry = entry
        self.field = field
        self.line = line

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.entry:
            parts.append(f"entry '{self.entry}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts).replace("\n", " ")


class CatalogError(FleetwiseError):
    """A catalog file is malformed or a catalog lookup failed."""


class UnknownNameError(CatalogError):
    """A name (GPU, model, precision, offer, engine) that is not in the catalog."""


class InputFormatError(FleetwiseError):
    """A user-supplied data file (points, trace, series) is malformed."""


class ConfigError(FleetwiseError):
    """Options that are out of range or contradict each other."""


class InfeasibleError(FleetwiseError):
    """No configuration can satisfy the request; the message says why."""

    exit_code = 3


class NotApplicableError(InfeasibleError):
    """A strategy cannot be built from the offers given (it needs a tier none of them prices)."""

    def __init__(self, strategy: str, reason: str) -> None:
        super().__init__(f"{strategy}: {reason}")
        self.strategy = strategy
        self.reason = reason


class SolverError(FleetwiseError):
    """A numerical solver failed to produce an answer."""

    exit_code = 4


class ActuatorError(FleetwiseError):
    """An actuator could not read or change the fleet; the controller's next reconcile step retries."""
