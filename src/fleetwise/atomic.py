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


class atomic_path:
    """``with atomic_path(p) as tmp: writer(tmp)`` — the file appears at ``p`` only if the block succeeds;
    the temporary file is removed whatever fails (the block, or giving it its mode and renaming it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_output_path(path)

    def __enter__(self) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
            return
        try:
            _default_mode(self.tmp)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` via a temporary file and rename."""
    text = {} if isinstance(data, bytes) else {"encoding": "utf-8", "newline": ""}
    flags = os.O_WRONLY | getattr(os, "O_BINARY", 0)  # as mkstemp opens it: no newline translation on Windows
    with atomic_path(path) as tmp, os.fdopen(os.open(tmp, flags), "w" if text else "wb", **text) as handle:
        handle.write(data)
