"""Writing result files safely: checked output folders, atomic writes, strict JSON.

Every file the toolkit writes (``.npz``, ``.png``, ``.json``, ``.csv``) goes to a temporary
file in the same folder first and is renamed over the target only once it is complete, so a
full disk or a crash never leaves a truncated file under the real name. JSON is strict: a
number that is not finite (NaN, infinity) is written as ``null``, because many JSON readers
reject the bare ``NaN`` that Python's ``json`` writes by default.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from .signals import signals_deferred

PathLike = Union[str, os.PathLike]


class OutputError(OSError):
    """An output folder or file that cannot be written, with the reason and the fix."""


def check_output_dir(path: PathLike, what: str = "output folder", create: bool = True) -> Path:
    """Make sure ``path`` is (or can become) a writable folder, before any work is done.

    Writes and removes a probe file. Raises :class:`OutputError` naming the problem: an
    existing file of that name, a read-only place, a full disk. With ``create=False`` the
    folders made for the probe are removed again, so a run that fails early leaves no empty
    folder behind (:func:`staged_outputs` makes it when the results are complete).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, not a folder; choose another --out")
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hsets-write-test-", dir=path)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise OutputError(f"cannot write to {what} {path}: {err.strerror or err}; choose a writable --out") from err
    finally:
        if not create:
            for p in made:                      # deepest first
                with contextlib.suppress(OSError):
                    p.rmdir()
    return path


def why_missing(path: PathLike, what: str = "file") -> str:
    """Why ``path`` cannot be opened although it was named: not found, a symbolic link loop,
    or a link to nothing (``Path.exists`` says False for all three).
    """
    path = Path(path)
    if not path.is_symlink():
        return f"{what} not found: {path}"
    try:
        path.resolve(strict=True)
    except (RuntimeError, OSError) as err:
        if isinstance(err, RuntimeError) or getattr(err, "errno", None) == errno.ELOOP:
            return f"{what} {path} is a symbolic link loop; point it at a real file"
    return f"{what} {path} is a broken symbolic link (to {os.readlink(path)}); point it at a real file"


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    If the block fails (a full disk, an exception), the temporary file is removed and
    ``path`` keeps its old content, or stays absent.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())     # mkstemp's 0600 would outlive the rename
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(f"could not write {path}: {err.strerror or err}") from err
        raise


def current_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only set it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


@contextlib.contextmanager
def staged_outputs(out: PathLike) -> Iterator[Path]:
    """Yield an empty staging folder (inside ``out`` when it exists, else beside it); on
    success its files replace ``out``'s as one unit, on failure it is removed and ``out`` is
    left as it was.

    A new ``out`` is the staging folder renamed. Into an existing one the files are moved
    with SIGINT and SIGTERM held back (:func:`~hsets_widgets.plumbing.signals.signals_deferred`),
    after checking every name can take a file, so a stop request never leaves a folder that
    mixes two runs.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # inside an existing out (its parent may not be writable), else beside it (to become it)
    home = out if out.is_dir() else out.parent
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=home))
    try:
        yield stage
        commit_folder(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def commit_folder(stage: Path, out: Path) -> None:
    """Move every file of ``stage`` into ``out`` (see :func:`staged_outputs`)."""
    os.chmod(stage, 0o777 & ~current_umask())   # mkdtemp's 0700 would outlive the rename
    if not out.exists():
        os.replace(stage, out)
        return
    names = sorted(p.name for p in stage.iterdir())
    blocked = [n for n in names if (out / n).is_dir() and not (out / n).is_symlink()]
    if blocked:
        raise OutputError(f"could not write {out / blocked[0]}: a folder of that name is in the way; "
                          "remove it or choose another --out")
    try:
        with signals_deferred():
            for n in names:
                os.replace(stage / n, out / n)
    except OSError as err:
        raise OutputError(f"could not move the results into {out}: {err.strerror or err}") from err


def strict(obj):
    """``obj`` with NumPy scalars and arrays made plain and non-finite floats made ``None``."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def dumps(obj, **kw) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict`); never writes NaN or Infinity."""
    return json.dumps(strict(obj), allow_nan=False, **kw)


def write_json(path: PathLike, obj, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path``, atomically."""
    text = dumps(obj, indent=indent)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
