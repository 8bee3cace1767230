"""Writing result files safely: checked output folders, atomic writes, strict JSON.

Every file the toolkit writes (``.npz``, ``.png``, ``.json``, ``.csv``) goes to a temporary
file in the same folder first and is renamed over the target only once it is complete, so a
full disk or a crash never leaves a truncated file under the real name. JSON is strict: a
number that is not finite (NaN, infinity) is written as ``null``, because many JSON readers
reject the bare ``NaN`` that Python's ``json`` writes by default.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

import numpy as np

PathLike = Union[str, os.PathLike]


class OutputError(OSError):
    """An output folder or file that cannot be written, with the reason and the fix."""


def check_output_dir(path: PathLike, what: str = "output folder") -> Path:
    """Make sure ``path`` is (or can become) a writable folder, before any work is done.

    Creates it if needed and writes and removes a probe file. Raises :class:`OutputError`
    naming the problem: an existing file of that name, a read-only place, a full disk.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, not a folder; choose another --out")
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
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    If the block fails (a full disk, an exception), the temporary file is removed and
    ``path`` keeps its old content, or stays absent.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
