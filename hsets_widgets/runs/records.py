"""Read an ``hsets evaluate`` folder without ever writing to it: the records, their numbers as
columns, the stored maps, the summary with intervals, and two runs paired photo by photo.

The resuming run (:mod:`~hsets_widgets.runs.runner`) repairs and locks its folder; a
viewer must not, because the run may still be writing (one process or Ray's driver) or the
folder may be someone else's result. So this module opens every file read-only, reads
``results.jsonl`` line by line with the run's own parser (:func:`~.store.parse_line`), reads
only the bytes added since the last look (:meth:`RunRecords.refresh`), and turns whatever it
cannot use (a torn or damaged line, a failed image, a missing maps file, another version's
record, an unreadable ``metrics.json``) into a :attr:`RunRecords.notes` line instead of an
error. The gallery (:mod:`hsets_widgets.widgets.gallery`) is a view over this.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..metrics.statistics import bootstrap_mean, paired_difference
from ..model.images import load_image, resize_center_crop
from .store import load_maps, load_sets, parse_line

#: the per-photo numbers every record carries (besides each method's)
PHOTO_NUMBERS = ("probability", "correct", "target", "label")


class NotARunFolder(ValueError):
    """A folder that holds no ``hsets evaluate`` output."""


@dataclass
class PhotoRecord:
    """One photo of a run: the latest line of ``results.jsonl`` about it.

    ``numbers`` maps a column name (``"probability"``, ``"correct"``, ``"<method> <metric>"``)
    to its value; a failed photo has no numbers and a ``reason``.
    """

    key: str
    slug: str
    path: str
    status: str
    line: int
    reason: str = ""
    label: Optional[int] = None
    target: Optional[int] = None
    target_name: str = ""
    methods: tuple = ()
    numbers: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The photo's file name."""
        return Path(self.path).name

    @property
    def ok(self) -> bool:
        """Whether the photo was evaluated (not failed)."""
        return self.status == "ok"


def method_numbers(name: str, scores: dict) -> dict:
    """``{"<name> <metric>": value}`` of every number a method's record holds (curves, which
    are dicts of lists, are left out; a metric this version does not know is kept).
    """
    out = {}
    for metric, v in scores.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{name} {metric}"] = float(v)
    return out


def photo_record(rec: dict, line: int) -> PhotoRecord:
    """A :class:`PhotoRecord` from one parsed line (:func:`~.store.parse_line`)."""
    if rec.get("status") != "ok":
        return PhotoRecord(rec["key"], str(rec.get("slug", "")), str(rec.get("path", "")), "failed", line,
                           reason=str(rec.get("reason", "no reason recorded")))
    label, target = rec.get("label"), rec["target"]
    numbers = {"target": float(target)}
    if isinstance(label, int) and not isinstance(label, bool):
        numbers["label"] = float(label)
        numbers["correct"] = float(label == target)
    if isinstance(rec.get("probability"), (int, float)):
        numbers["probability"] = float(rec["probability"])
    for name, scores in rec["methods"].items():
        numbers.update(method_numbers(name, scores))
    return PhotoRecord(rec["key"], rec["slug"], rec["path"], "ok", line, label=label, target=target,
                       target_name=str(rec.get("target_name", target)), methods=tuple(rec["methods"]),
                       numbers=numbers)


def read_json(path: Path, what: str, notes: list) -> Optional[dict]:
    """A JSON object from ``path``, or None with a note saying why."""
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        notes.append(f"{what} cannot be read ({type(err).__name__}); its numbers are left out")
        return None
    if not isinstance(obj, dict):
        notes.append(f"{what} is not a JSON object; its numbers are left out")
        return None
    return obj


class RunRecords:
    """The records of one ``hsets evaluate`` output folder, read without writing to it.

    Parameters
    ----------
    folder : path
        The ``--out`` folder of ``hsets evaluate`` (``results.jsonl``, ``metrics.json``,
        ``maps/``, ``config.json``).

    Attributes
    ----------
    records : dict
        ``{key: PhotoRecord}`` in the order photos first appeared; a later line about the same
        photo replaces the earlier one (a rerun that added methods, a failure then a success).
    notes : list of str
        What could not be used, one plain line each (shown above the gallery).
    config, metrics : dict or None
        ``config.json`` and ``metrics.json`` (None while a run has not written them).
    """

    def __init__(self, folder: Union[str, Path]):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise NotARunFolder(f"{self.folder} is not a folder; give the --out folder of `hsets evaluate`")
        if not (self.folder / "results.jsonl").exists() and not (self.folder / "config.json").exists():
            raise NotARunFolder(f"{self.folder} holds no results.jsonl or config.json; give the --out folder of "
                                "`hsets evaluate`")
        self.results = self.folder / "results.jsonl"
        self.records: dict = {}
        self.bad_lines: list = []           # (line, why)
        self.torn_tail = b""                # an unfinished last line, not yet a record
        self.offset = 0                     # bytes of results.jsonl read so far
        self.n_lines = 0
        self.file_notes: list = []
        self.config = read_json(self.folder / "config.json", "config.json", self.file_notes)
        self.metrics = read_json(self.folder / "metrics.json", "metrics.json", self.file_notes)
        self.version = 0                    # bumped whenever records change (views re-sort then)
        self.map_files = set()
        self.columns_cache = None
        self.refresh()

    # ---- reading ---------------------------------------------------------------------------
    def refresh(self) -> list:
        """Read what was appended to ``results.jsonl`` since the last call (the file's size
        tells): returns the keys of new or replaced records. A file that shrank (a new run in
        the folder) is read again from the start.
        """
        try:
            size = self.results.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:               # replaced or cut: read it all again
            self.records.clear()
            self.bad_lines.clear()
            self.offset = self.n_lines = 0
            self.torn_tail = b""
        if size == self.offset:
            return []
        with open(self.results, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(size - self.offset)
        self.offset += len(data)
        data = self.torn_tail + data
        lines = data.split(b"\n")
        self.torn_tail = lines.pop()         # "" after a final newline; else a line still being written
        changed = []
        for raw in lines:
            self.n_lines += 1
            if not raw.strip():
                continue
            rec, why = parse_line(raw)
            if rec is None:
                self.bad_lines.append((self.n_lines, why))
                continue
            old = self.records.get(rec["key"])
            if old is not None and old.ok and rec.get("status") != "ok":
                continue                     # a failed retry does not hide a done photo
            self.records[rec["key"]] = photo_record(rec, self.n_lines)
            changed.append(rec["key"])
        # anything appended changes what is said (an unfinished line is a note), if not the records
        self.version += 1
        self.columns_cache = None
        self.scan_maps()
        return changed

    def scan_maps(self) -> None:
        """Which photos have a maps file (one listing of ``maps/``, not a check per photo)."""
        try:
            self.map_files = {n[:-4] for n in os.listdir(self.folder / "maps") if n.endswith(".npz")}
        except OSError:
            self.map_files = set()

    @property
    def notes(self) -> list:
        """Everything the folder lacks or holds that could not be used, one line each."""
        out = list(self.file_notes)
        done = [r for r in self.records.values() if r.ok]
        failed = [r for r in self.records.values() if not r.ok]
        if not self.results.exists():
            out.append("results.jsonl does not exist yet (the run has not finished a photo)")
        for line, why in self.bad_lines[:3]:
            out.append(f"results.jsonl line {line} skipped: {why} (damaged, or written by another version)")
        if len(self.bad_lines) > 3:
            out.append(f"... and {len(self.bad_lines) - 3} more damaged lines of results.jsonl skipped")
        if self.torn_tail.strip():
            out.append(f"the last line of results.jsonl is unfinished ({len(self.torn_tail)} bytes): being "
                       "written now, or cut short; it is shown once it is whole")
        if failed:
            out.append(f"{len(failed)} photo(s) failed: " + "; ".join(
                f"{r.name}: {r.reason}" for r in failed[:3]) + (" ..." if len(failed) > 3 else ""))
        old = [r for r in done if "probability" not in r.numbers]
        if old:
            out.append(f"{len(old)} record(s) lack the class probability (written by an older version): "
                       "their probability column is empty")
        no_maps = [r for r in done if r.slug not in self.map_files]
        if no_maps:
            out.append(f"{len(no_maps)} photo(s) have no maps file in maps/ (e.g. {no_maps[0].slug}.npz): their "
                       "thumbnails show the photo alone")
        if self.metrics is None and done:
            out.append("metrics.json is not written yet (the run is under way or was stopped): the summary "
                       "is computed from the records")
        return out

    # ---- what the records hold -------------------------------------------------------------
    @property
    def keys(self) -> list:
        """Every photo's key, in the order of ``results.jsonl``."""
        return list(self.records)

    @property
    def methods(self) -> list:
        """Every method any record scored, in the order they first appear."""
        seen = {}
        for r in self.records.values():
            seen.update(dict.fromkeys(r.methods))
        return list(seen)

    def columns(self) -> dict:
        """``{column name: float array over keys}`` (NaN where a photo lacks it): every number
        the run recorded, per photo and per method, ready to sort, filter and plot.
        """
        if self.columns_cache is None:
            recs = list(self.records.values())
            names = {}
            for r in recs:
                names.update(dict.fromkeys(r.numbers))
            order = [n for n in PHOTO_NUMBERS if n in names] + sorted(n for n in names if n not in PHOTO_NUMBERS)
            self.columns_cache = {n: np.array([r.numbers.get(n, math.nan) for r in recs], np.float64)
                                  for n in order}
        return self.columns_cache

    def numbers(self) -> list:
        """The column names (:meth:`columns`)."""
        return list(self.columns())

    def maps(self, key: str, names=None) -> dict:
        """The stored maps of a photo (``{method: (H, W) array}``; channels summed), ``{}`` when
        its maps file is missing or unreadable.
        """
        rec = self.records[key]
        if not rec.ok or rec.slug not in self.map_files:
            return {}
        try:
            got = load_maps(self.folder / "maps" / f"{rec.slug}.npz", list(names or rec.methods))
        except (OSError, ValueError, KeyError):
            return {}
        return {k: (np.asarray(v, np.float64).sum(0) if np.ndim(v) == 3 else np.asarray(v, np.float64))
                for k, v in got.items()}

    def sets(self, key: str, names=None) -> dict:
        """The stored sets of a photo (``{method: tuple of PixelSet}``, for the methods that made
        and stored some), ``{}`` when its maps file is missing or unreadable.
        """
        rec = self.records[key]
        if not rec.ok or rec.slug not in self.map_files:
            return {}
        try:
            return load_sets(self.folder / "maps" / f"{rec.slug}.npz", list(names or rec.methods))
        except (OSError, ValueError, KeyError):
            return {}

    def photo(self, key: str, size: Optional[int] = None) -> Optional[np.ndarray]:
        """The photo as the run saw it (resized and centre-cropped to ``size``), or None when
        its file is gone or unreadable.
        """
        path = Path(self.records[key].path)
        try:
            arr = load_image(path)
        except Exception:  # noqa: BLE001 - a moved or broken photo: the view says so
            return None
        return resize_center_crop(arr, size) if size else arr

    # ---- summaries -------------------------------------------------------------------------
    def summary(self, metrics=("morf_aopc", "lerf_aopc", "insertion_auc", "deletion_auc", "sparsity",
                               "support_fraction", "interaction_share"), n_boot: int = 2000) -> dict:
        """``{method: {metric: {"mean", "low", "high", "n", "source"}}}``: each method's mean with
        a 95% interval. From ``metrics.json`` (mean +- 1.96 std / sqrt(n), a normal interval:
        the file keeps no per-photo values) where it covers the records, else from the records
        themselves (a percentile bootstrap over photos, while a run is still writing).
        """
        cols = self.columns()
        n_done = sum(r.ok for r in self.records.values())
        summ = (self.metrics or {}).get("methods", {}) if isinstance(self.metrics, dict) else {}
        use_file = bool(summ) and (self.metrics or {}).get("n_images") == n_done
        out = {}
        for m in self.methods:
            row = {}
            for metric in metrics:
                e = summ.get(m, {}).get(metric) if use_file else None
                if isinstance(e, dict) and e.get("n"):
                    half = 1.96 * (e.get("std") or 0.0) / math.sqrt(e["n"])
                    row[metric] = {"mean": e["mean"], "low": e["mean"] - half, "high": e["mean"] + half,
                                   "n": e["n"], "source": "metrics.json"}
                    continue
                col = cols.get(f"{m} {metric}")
                if col is None or not np.isfinite(col).any():
                    continue
                mean, lo, hi = bootstrap_mean(col, n_boot=n_boot)
                row[metric] = {"mean": mean, "low": lo, "high": hi, "n": int(np.isfinite(col).sum()),
                               "source": "records"}
            out[m] = row
        return out


class PairedRuns:
    """Two runs over the same photos (two models, two presets...), paired by photo.

    ``columns()`` holds ``"A: <col>"`` and ``"B: <col>"`` for every number of either run and
    ``"B - A: <col>"`` for the numbers both recorded, over the photos both hold (in run A's order).
    """

    def __init__(self, a: RunRecords, b: RunRecords):
        self.a, self.b = a, b
        self.columns_cache, self.seen = None, None

    @property
    def version(self) -> tuple:
        """Changes whenever either run's records do."""
        return (self.a.version, self.b.version)

    def refresh(self) -> list:
        """Read both runs' new records; the keys that changed."""
        return self.a.refresh() + self.b.refresh()

    @property
    def keys(self) -> list:
        """Photos done in both runs, in run A's order."""
        return [k for k, r in self.a.records.items()
                if r.ok and k in self.b.records and self.b.records[k].ok]

    @property
    def records(self) -> dict:
        """Run A's records of the paired photos."""
        return {k: self.a.records[k] for k in self.keys}

    @property
    def methods(self) -> list:
        """Methods of either run."""
        return list(dict.fromkeys(self.a.methods + self.b.methods))

    @property
    def notes(self) -> list:
        """Both runs' notes, and the photos only one of them holds."""
        out = [f"run A: {n}" for n in self.a.notes] + [f"run B: {n}" for n in self.b.notes]
        paired = set(self.keys)
        only_a = sum(1 for k, r in self.a.records.items() if r.ok and k not in paired)
        only_b = sum(1 for k, r in self.b.records.items() if r.ok and k not in self.a.records)
        if only_a or only_b:
            out.append(f"{only_a} photo(s) only in run A and {only_b} only in run B are left out of the pairing")
        return out

    def columns(self) -> dict:
        """See the class docstring."""
        if self.columns_cache is None or self.seen != self.version:
            keys = self.keys
            ca, cb = self.a.columns(), self.b.columns()
            ia = {k: i for i, k in enumerate(self.a.keys)}
            ib = {k: i for i, k in enumerate(self.b.keys)}
            pa, pb = np.array([ia[k] for k in keys], int), np.array([ib[k] for k in keys], int)
            out = {}
            for name in dict.fromkeys(list(ca) + list(cb)):
                if name in ca and name in cb:
                    out[f"B - A: {name}"] = cb[name][pb] - ca[name][pa]
            for name, col in ca.items():
                out[f"A: {name}"] = col[pa]
            for name, col in cb.items():
                out[f"B: {name}"] = col[pb]
            self.columns_cache, self.seen = out, self.version
        return self.columns_cache

    def numbers(self) -> list:
        """The column names."""
        return list(self.columns())

    def difference(self, column: str, n_boot: int = 2000):
        """Paired difference B - A of ``column`` over the photos (bootstrap interval)."""
        cols = self.columns()
        return paired_difference(cols[f"B: {column}"], cols[f"A: {column}"], n_boot=n_boot)


def sort_order(values: np.ndarray, descending: bool = False) -> np.ndarray:
    """Indices that sort ``values`` (NaN, a photo without that number, always last); stable."""
    v = np.asarray(values, np.float64)
    key = np.where(np.isnan(v), np.inf, -v if descending else v)
    return np.argsort(key, kind="stable")


def within(values: np.ndarray, low: Optional[float] = None, high: Optional[float] = None) -> np.ndarray:
    """Boolean mask of the values in ``[low, high]`` (a bound of None is open; NaN is outside)."""
    v = np.asarray(values, np.float64)
    keep = np.isfinite(v)
    if low is not None:
        keep &= v >= low
    if high is not None:
        keep &= v <= high
    return keep


def open_run(folder, compare=None):
    """:class:`RunRecords` of ``folder``, or :class:`PairedRuns` with ``compare``."""
    a = folder if isinstance(folder, RunRecords) else RunRecords(folder)
    if compare is None:
        return a
    return PairedRuns(a, compare if isinstance(compare, RunRecords) else RunRecords(compare))
