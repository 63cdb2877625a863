"""Atomic file output: write to a temporary file in the same directory, then rename over the target, so an
interrupted run never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fleetwise.errors import ConfigError


def check_output_path(path: str | Path) -> Path:
    """Fail before any long work if an output file could not be written."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError("output directory does not exist", file=str(path))
    return path


def _default_mode(tmp: str | Path) -> None:
    """Give a temporary file the mode a plain open() would (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` via a temporary file and rename."""
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if isinstance(data, bytes):
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(data)
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class atomic_path:
    """``with atomic_path(p) as tmp: writer(tmp)`` — the file appears at ``p`` only if the block succeeds."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_output_path(path)

    def __enter__(self) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            _default_mode(self.tmp)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
