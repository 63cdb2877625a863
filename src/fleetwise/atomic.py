"""Atomic file output: write to a temporary file in the same directory, then rename over the target, so an
interrupted run never leaves half a file.

Inside :func:`output_batch` (the CLI runs every command in one) the renames wait until the batch ends: a run
that fails part-way leaves none of its outputs behind, not just no half-written one.

Temporary files never outlive the process: each is registered before it is created and removed on every way
out - an exception, KeyboardInterrupt (the CLI raises one on SIGTERM too), or an exit with some still held
(:func:`remove_leftovers`, run at exit). Only a SIGKILL or a crash of the interpreter leaves one behind."""

from __future__ import annotations

import atexit
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from fleetwise.errors import ConfigError

# (temporary file, target) pairs written inside the current output_batch; None outside one.
_pending: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("fleetwise_pending_outputs", default=None)
# Temporary files of this process not yet renamed into place or removed (some may not exist yet, or any more).
_live: set[Path] = set()


def _make_temp(path: Path) -> Path:
    """Create an empty temporary file next to ``path`` (as mkstemp does: a new name, mode 0600), registered
    before it exists so that an interrupt at any point of its creation leaves nothing behind."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        _live.add(tmp)
        try:
            os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600))
        except FileExistsError:  # someone else's: not ours to remove
            _live.discard(tmp)
            continue
        except BaseException:
            _remove(tmp)
            raise
        return tmp
    raise FileExistsError(f"no free temporary file name next to '{path}'")


def _remove(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)
    _live.discard(tmp)


def remove_leftovers() -> None:
    """Remove every temporary file this process still holds (at exit; the normal paths remove them sooner)."""
    for tmp in list(_live):
        try:
            _remove(tmp)
        except OSError:  # a vanished directory: nothing left to remove
            _live.discard(tmp)


atexit.register(remove_leftovers)


def check_output_path(path: str | Path, option: str | None = None) -> Path:
    """Fail before any long work if an output file could not be written: an empty name, a directory, an
    existing non-file (a device, a FIFO), or a directory that is missing or where no file can be created.
    ``option`` (e.g. '--out') is named in the message."""

    def error(message: str) -> ConfigError:
        return ConfigError(message + (f" ({option})" if option else ""), file=str(path) or None)

    if not str(path).strip():
        raise error("the output file name is empty")
    path = Path(path)
    if path.is_dir():
        raise error("is a directory, not an output file")
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        raise error("exists and is not a regular file")
    directory = path.parent
    if not directory.is_dir():
        raise error(f"output directory {'is not a directory' if directory.exists() else 'does not exist'}")
    try:  # what atomic_path will do; os.access() says yes to root even where nothing can be created (/proc)
        probe = _make_temp(path)
    except OSError as exc:
        raise error(f"cannot create a file in '{directory}' ({exc.strerror or exc})") from None
    _remove(probe)
    return path


def _default_mode(tmp: str | Path) -> None:
    """Give a temporary file the mode a plain open() would (it is created 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the file ({exc.strerror or exc})", file=str(path)) from None
    _live.discard(tmp)


class atomic_path:
    """``with atomic_path(p) as tmp: writer(tmp)`` — the file appears at ``p`` only if the block succeeds
    (inside an :func:`output_batch`, only once the whole batch succeeds); the temporary file is removed
    whatever fails (the block, or giving it its mode and renaming it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_output_path(path)

    def __enter__(self) -> Path:
        try:
            self.tmp = _make_temp(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot create a file next to it ({exc.strerror or exc})",
                              file=str(self.path)) from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            _remove(self.tmp)
            return
        try:
            _default_mode(self.tmp)
            pending = _pending.get()
            if pending is not None:
                pending.append((self.tmp, self.path))
                return
            _replace(self.tmp, self.path)
        except BaseException:
            _remove(self.tmp)
            raise


@contextmanager
def output_batch() -> Iterator[list[tuple[Path, Path]]]:
    """Hold back the files written atomically inside the block: they all appear when it ends normally, and
    none does if it raises (their temporary files are removed). Yields the (temporary file, target) pairs held
    so far, so a caller can say which outputs a failure withdrew. Nested batches join the outermost one."""
    outer = _pending.get()
    if outer is not None:
        yield outer
        return
    pending: list[tuple[Path, Path]] = []
    token = _pending.set(pending)
    try:
        yield pending
    except BaseException:
        _discard(pending)
        raise
    finally:
        _pending.reset(token)
    for k, (tmp, path) in enumerate(pending):
        try:
            _replace(tmp, path)
        except BaseException:
            del pending[:k]  # those are in place; the rest are withdrawn
            _discard(pending)
            raise


def _discard(pending: list[tuple[Path, Path]]) -> None:
    for tmp, _ in pending:
        _remove(tmp)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` via a temporary file and rename."""
    text = {} if isinstance(data, bytes) else {"encoding": "utf-8", "newline": ""}
    flags = os.O_WRONLY | getattr(os, "O_BINARY", 0)  # as mkstemp opens it: no newline translation on Windows
    with atomic_path(path) as tmp, os.fdopen(os.open(tmp, flags), "w" if text else "wb", **text) as handle:
        handle.write(data)
