"""The files of an evaluation folder: append-only ``results.jsonl`` (repaired when torn),
one CSV and one ``.npz`` of maps per image (with the sets of the methods that make sets).
Every write is whole or absent.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from ..methods.protocol import PixelSet
from ..metrics.insertion import KINDS as CURVE_KINDS
from ..metrics.interactions import INTERACTION_METRICS
from ..metrics.road import ROAD_ORDERS
from ..plumbing.files import atomic_path, dumps

#: Per-method scalar metrics summarised in ``metrics.json``.
SCALAR_METRICS = ("sparsity", "sparsity_matched", "sparsity_within", "matched_support", "support",
                  "support_fraction",
                  "morf_aopc", "lerf_aopc", "morf_aopc_accuracy", "lerf_aopc_accuracy",
                  "morf_aopc_first5", "morf_aopc_first10", "morf_aopc_first15",
                  "morf_auc", "morf_probability_auc", "lerf_auc", "lerf_probability_auc",
                  "insertion_auc", "deletion_auc",
                  "attribution_seconds", "road_seconds") + INTERACTION_METRICS + ("interaction_seconds",)


#: the lock file of an evaluation folder (see :func:`lock_folder`)
LOCK_NAME = ".hsets-evaluate.lock"


def lock_folder(out: Path):
    """Hold ``out``'s lock for one evaluation; returns the open lock file (closing it, or
    the process ending, releases it). Raises RuntimeError when another run holds it, since
    two runs appending to one ``results.jsonl`` lose or duplicate records.
    """
    import fcntl

    fh = open(out / LOCK_NAME, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise RuntimeError(f"another evaluation is writing to {out} (process {holder}); wait for it to "
                           "finish, or choose another --out") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def repair_results(path: Path) -> int:
    """Cut a torn last record (a crash mid-write, a copy cut short) off ``results.jsonl``.

    Only the end of the file can be torn, since records are appended whole: if the file does
    not end with a newline, or its last line is not valid JSON, that line is removed (with a
    warning) so the next record starts on a line of its own. Returns the bytes removed.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    end = len(data)
    body = data[:-1] if data.endswith(b"\n") else data
    start = body.rfind(b"\n") + 1
    last = body[start:]
    try:
        ok = data.endswith(b"\n") and (not last.strip() or json.loads(last.decode()) is not None)
    except (ValueError, UnicodeDecodeError):
        ok = False
    if ok:
        return 0
    with open(path, "r+b") as fh:
        fh.truncate(start)
    warnings.warn(f"{path}: its last record was cut short ({end - start} bytes); removed it, "
                  "that image will be evaluated again", stacklevel=2)
    return end - start


def record_problem(rec) -> str:
    """What makes ``rec`` (one parsed line of ``results.jsonl``) unusable as a done image's
    record, or ``""`` when it is one (or a ``"failed"`` line, which is never counted done).
    """
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a record"
    if rec.get("status") != "ok":
        return "" if rec.get("status") == "failed" else f"status {rec.get('status')!r} is not 'ok' or 'failed'"
    for key, kind in (("key", str), ("slug", str), ("path", str), ("methods", dict)):
        if not isinstance(rec.get(key), kind):
            return f"its {key!r} is missing or not a {kind.__name__}"
    if isinstance(rec.get("target"), bool) or not isinstance(rec.get("target"), int):
        return "its 'target' is missing or not a whole number"
    bad = [name for name, m in rec["methods"].items() if not isinstance(m, dict)]
    if bad:
        return f"method {bad[0]!r} holds no metrics"
    return ""


def parse_line(raw: bytes):
    """``(record, "")`` for one line of ``results.jsonl`` that is a whole record (``"ok"`` or
    ``"failed"``), else ``(None, why)``: the one reading of a line, shared by the resuming run
    (:func:`read_results`) and the read-only viewer (:mod:`~hsets_widgets.runs.records`).
    """
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except (ValueError, RecursionError) as err:
        return None, f"it is not JSON ({err.__class__.__name__}: {str(err).split(':')[0]})"
    why = record_problem(rec)
    return (None, why) if why else (rec, "")


def read_results(path: Path) -> dict:
    """``{key: record}`` from a ``results.jsonl`` (later lines win).

    A line that is not a whole record (torn, NUL bytes, not UTF-8, not a JSON object, a record
    without its ``key`` or ``methods``...) is skipped with a warning naming the file and the line:
    that image is evaluated again, never mixed with the damage.
    """
    done = {}
    if not path.exists():
        return done
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            rec, why = parse_line(raw)
            if rec is not None:
                if rec.get("status") == "ok":
                    done[rec["key"]] = rec
                continue
            warnings.warn(f"{path}, line {n}: skipped a damaged record ({why}); that image will be "
                          "evaluated again", stacklevel=2)
    return done


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` to ``results.jsonl`` as one strict-JSON line, flushed to disk."""
    line = dumps(record) + "\n"      # one write of one whole line, strict JSON
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def save_maps(path: Path, arrays: dict) -> None:
    """Write an image's maps (keys from :func:`map_key`) atomically to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:     # a file object: no ".npz" added
        np.savez_compressed(fh, **arrays)


def map_key(name: str) -> str:
    """The ``.npz`` key of method ``name`` (any method spec, made a valid and unique key)."""
    return "m_" + re.sub(r"[^A-Za-z0-9]", "_", name) + "_" + hashlib.sha1(name.encode()).hexdigest()[:6]


def write_image_csv(path: Path, record: dict) -> None:
    """One row per method with every scalar metric and every curve point, written atomically."""
    rows = []
    for name, m in record["methods"].items():
        row = {"image": record["path"], "label": record.get("label"), "target": record["target"],
               "method": name}
        row.update({k: m.get(k) for k in SCALAR_METRICS})
        for order in ROAD_ORDERS:
            if order in m:
                c = m[order]
                for p, a, pr in zip(c["percentages"], c["accuracy"], c["probability"]):
                    row[f"{order}_accuracy@{p:g}"] = a
                    row[f"{order}_probability@{p:g}"] = pr
        for kind in CURVE_KINDS:
            if kind in m:
                for f, pr in zip(m[kind]["fractions"], m[kind]["probability"]):
                    row[f"{kind}_probability@{f:g}"] = pr
        rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def stored_arrays(path: Path) -> dict:
    """Every array of an image's ``.npz`` by its key (``{}`` when there is no file)."""
    if not path.exists():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_maps(path: Path, names, with_sets: bool = False) -> dict:
    """The stored maps of ``names`` (those present) from an image's ``.npz``; ``with_sets``:
    their :func:`set_entries` too (a resumed run writes the file again and must keep them).
    """
    stored = stored_arrays(path)
    keys = list(names) + ([f"{n} {part}" for n in names for part in SET_ARRAYS] if with_sets else [])
    return {k: stored[map_key(k)] for k in keys if map_key(k) in stored}


#: the four ``.npz`` entries beside a method's map that hold its sets (see :func:`set_entries`)
SET_ARRAYS = ("set_pixels", "set_offsets", "set_seeds", "set_values")


def set_entries(name: str, sets) -> dict:
    """Method ``name``'s :class:`~hsets_widgets.methods.protocol.PixelSet` s as entries of its
    image's maps (saved under :func:`map_key` of ``"<name> <part>"``): every set's flat pixel
    indices one after another, where each set starts and ends, each seed ``(y, x)`` and each
    value. ``{}`` for a method without sets (the file then looks as it always did).
    """
    if not sets:
        return {}
    pixels = [np.asarray(s.pixels, np.int64) for s in sets]
    return {f"{name} set_pixels": np.concatenate(pixels).astype(np.int32),
            f"{name} set_offsets": np.cumsum([0] + [len(p) for p in pixels]).astype(np.int64),
            f"{name} set_seeds": np.array([tuple(s.seed_yx) for s in sets], np.int32).reshape(-1, 2),
            f"{name} set_values": np.array([s.value for s in sets], np.float64)}


def load_sets(path: Path, names) -> dict:
    """The stored sets of ``names`` from an image's ``.npz``: ``{name: tuple of PixelSet}`` for
    the methods that stored any (a run before sets were stored has none).
    """
    stored = stored_arrays(path)
    out = {}
    for n in names:
        keys = [map_key(f"{n} {part}") for part in SET_ARRAYS]
        if all(k in stored for k in keys):
            pixels, offsets, seeds, values = (stored[k] for k in keys)
            out[n] = tuple(PixelSet(pixels[a:b].astype(np.int64), (int(s[0]), int(s[1])), float(v))
                           for a, b, s, v in zip(offsets[:-1], offsets[1:], seeds, values))
    return out
