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


MAX_ECHO_CHARS = 60
"""The most of a user's input an error message repeats: a whole binary header or JSON blob is not a message."""


def quote_input(text: object, limit: int = MAX_ECHO_CHARS) -> str:
    """A user's value quoted for an error line: non-printable characters (and undecodable bytes) shown as '?',
    long values cut with '...'."""
    raw = str(text)
    shown = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in raw[:limit])
    return "'" + shown + ("...'" if len(raw) > limit else "'")


def some_of(names, near: str | None = None, listing: str | None = None, most: int = 5) -> str:
    """'known: a, b, c' for a short list; for a long one the closest few to ``near`` and how to list the rest
    (``fleetwise catalog LISTING``), so an error stays one readable line."""
    import difflib

    names = sorted(str(n) for n in names)
    if len(names) <= most:
        return "known: " + ", ".join(names)
    close = []
    if near:
        key = str(near).lower()
        close = [n for n in names if key in n.lower()][:most]  # 'p5.4xl' -> 'aws/us-east-1/p5.4xlarge'
        close = close or difflib.get_close_matches(str(near), names, n=most, cutoff=0.5)
    how = f"; list them with 'fleetwise catalog {listing}'" if listing else ""
    if close:
        return f"closest: {', '.join(close)}; {len(names):,} known{how}"
    return f"{len(names):,} known, e.g. {', '.join(names[:most])}{how}"
