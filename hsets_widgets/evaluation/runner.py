"""Evaluate attribution methods over a folder of images: sparsity, ROAD, AOPC and insertion /
deletion, resumable.

:func:`run_evaluation` explains every image with every method, scores the maps
(:mod:`~hsets_widgets.evaluation.sparsity`, :mod:`~hsets_widgets.evaluation.road`) and
writes, under ``out_dir``:

``results.jsonl``
    One JSON record per finished image (appended as soon as the image is done). A rerun with
    the same ``out_dir`` reads it and skips images already done; methods added on a rerun
    are computed for the done images only.
``images/<name>.csv``
    One row per method: sparsity, support, ROAD areas and every point of every curve.
``maps/<name>.npz``
    The attribution maps (float32), so matched-support sparsity can be recomputed when
    methods are added.
``metrics.json``
    Mean and standard deviation (population, ``ddof=0``) of every metric per method, mean
    curves, and the counts of images done, resumed and skipped (with the reasons).
``road_morf.png``, ``road_lerf.png``
    Mean ROAD curves per method (accuracy and probability of the original class).
``insertion.png``, ``deletion.png``
    Mean insertion and deletion curves per method (when they are computed).
``config.json``
    The settings the ROAD numbers depend on; a rerun with other settings is refused.

Labels (optional, used for ``label_accuracy``) come from file names that start with an
ImageNet wnid (``n01440764_tench.JPEG``), from parent folders named by wnid (ImageFolder
layout), by class index, or by class name.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

from .baselines import Method, attribute, get_method
from .insertion import KINDS as CURVE_KINDS
from .insertion import insertion_deletion
from .road import ORDERS, classify_batches, resolve_percentages, road
from .sparsity import AttributionShapeError, gini, gini_at_support, gini_within_top, pixel_map, support_size

#: File extensions taken as images when a folder is scanned (explicit files are always tried).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")

#: Default methods of ``hsets evaluate``.
DEFAULT_METHODS = ("hsets", "ig", "gradient", "smoothgrad", "random")

#: Per-method scalar metrics summarised in ``metrics.json``.
SCALAR_METRICS = ("sparsity", "sparsity_matched", "sparsity_within", "matched_support", "support",
                  "support_fraction",
                  "morf_aopc", "lerf_aopc", "morf_aopc_accuracy", "lerf_aopc_accuracy",
                  "morf_auc", "morf_probability_auc", "lerf_auc", "lerf_probability_auc",
                  "insertion_auc", "deletion_auc",
                  "attribution_seconds", "road_seconds")

_WNID = re.compile(r"^(n\d{8})(?:[_\-.]|$)")


# ---- labels and image lists -------------------------------------------------------------
def imagenet_wnids() -> list:
    """The 1000 ImageNet-1k wnids in sorted order (index = output index of the classifier)."""
    text = resources.files("hsets_widgets").joinpath("data/imagenet_wnids.txt").read_text()
    wnids = [w.strip() for w in text.splitlines() if w.strip()]
    if len(wnids) != 1000:
        raise RuntimeError(f"hsets_widgets/data/imagenet_wnids.txt holds {len(wnids)} wnids, not 1000")
    return wnids


def wnid_to_index() -> dict:
    """``{"n01440764": 0, ...}``."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


def _norm_name(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.strip().lower())


def label_from_path(path: Union[str, Path], class_names: Optional[Sequence[str]] = None,
                    wnids: Optional[dict] = None) -> Optional[int]:
    """Class index of an image file from its name or folder, or None.

    Tried in order: a file name starting with a wnid (``n01440764_tench.JPEG``); a parent
    folder named by a wnid; a parent folder named by an integer class index; a parent folder
    named by one of ``class_names`` (case, spaces and underscores ignored).
    """
    path = Path(path)
    wnids = wnid_to_index() if wnids is None else wnids
    m = _WNID.match(path.name)
    if m and m.group(1) in wnids:
        return wnids[m.group(1)]
    parent = path.parent.name
    if parent in wnids:
        return wnids[parent]
    if parent.isdigit():
        return int(parent)
    if class_names:
        lookup = {_norm_name(n): i for i, n in enumerate(class_names)}
        if _norm_name(parent) in lookup:
            return lookup[_norm_name(parent)]
    return None


@dataclass
class ImageItem:
    """One image to evaluate: its path, its label (or None) and its resume key."""

    path: Path
    label: Optional[int] = None

    @property
    def key(self) -> str:
        """The resolved path, which identifies the image in ``results.jsonl``."""
        return str(self.path.resolve())

    @property
    def slug(self) -> str:
        """A file-name-safe, collision-free name for the per-image outputs."""
        stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", self.path.stem)[:80]
        return f"{stem}-{hashlib.sha1(self.key.encode()).hexdigest()[:8]}"


def collect_images(paths: Iterable[Union[str, Path]], class_names: Optional[Sequence[str]] = None) -> list:
    """Image files named in ``paths`` (files, or folders scanned recursively), sorted.

    Files given explicitly are kept whatever their extension (an unreadable one is skipped
    and counted later); files inside folders are kept if their extension is an image one.
    Raises FileNotFoundError for a path that does not exist.
    """
    wnids = wnid_to_index()
    found = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*")
                            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    seen, items = set(), []
    for f in found:
        k = str(f.resolve())
        if k not in seen:
            seen.add(k)
            items.append(ImageItem(f, label_from_path(f, class_names, wnids)))
    return items


def imagenette_items(root: Union[str, Path], split: str = "val", size: str = "320px",
                     download: bool = True) -> list:
    """Images of torchvision's Imagenette (downloaded into ``root`` if missing), with
    ImageNet-1k labels.

    Raises RuntimeError with what to do instead when the download fails (offline).
    """
    from torchvision.datasets import Imagenette

    try:
        ds = Imagenette(str(root), split=split, size=size, download=download)
    except Exception as err:  # noqa: BLE001 - urllib, tarfile and torchvision raise many types
        url = Imagenette._ARCHIVES.get(size, ("?",))[0]
        raise RuntimeError(
            f"could not get Imagenette ({size}, {split}) into {root}: {type(err).__name__}: {err}. "
            f"Offline? Download {url} elsewhere, extract it into {root}, and rerun; or pass a "
            "folder of images (ImageFolder layout or wnid-named files) instead of --imagenette") from err
    image_root = Path(getattr(ds, "_image_root", Path(root)))
    return collect_images([image_root])


# ---- one image ---------------------------------------------------------------------------
def load_item(item: ImageItem, size: int) -> torch.Tensor:
    """Read, resize and centre-crop one image to ``(3, size, size)`` in [0, 1]."""
    from hsets_widgets.images import load_image, resize_center_crop, to_tensor

    arr = load_image(item.path)
    if arr.shape[:2] != (size, size):
        arr = resize_center_crop(arr, size)
    return to_tensor(arr)


def method_record(amap: np.ndarray, road_result, seconds: float, road_seconds: float,
                  curves_result=None) -> dict:
    """Scalar metrics and curves of one method on one image (matched sparsity added later).

    ``road_result`` is a :class:`~hsets_widgets.evaluation.road.ROADResult`;
    ``curves_result`` an optional
    :class:`~hsets_widgets.evaluation.insertion.InsertionDeletionResult`.
    """
    pm = pixel_map(amap)
    sup = support_size(pm)
    rec = {"sparsity": gini(pm), "support": sup, "support_fraction": sup / pm.size,
           "attribution_seconds": seconds, "road_seconds": road_seconds,
           "impute_seconds": road_result.impute_seconds,
           "classify_seconds": road_result.classify_seconds}
    for order, curve in road_result.curves.items():
        rec[f"{order}_aopc"] = curve.aopc("probability")
        rec[f"{order}_aopc_accuracy"] = curve.aopc("accuracy")
        rec[f"{order}_auc"] = curve.auc("accuracy")
        rec[f"{order}_probability_auc"] = curve.auc("probability")
        rec[order] = curve.to_dict()
    if curves_result is not None:
        for kind, curve in curves_result.curves.items():
            rec[f"{kind}_auc"] = curve.auc("probability")
            rec[kind] = curve.to_dict()
        rec["curves_seconds"] = curves_result.seconds
    return rec


def add_matched_sparsity(records: dict, maps: dict, match_support: Union[str, float] = "min") -> int:
    """Add ``sparsity_matched`` and ``sparsity_within`` to every method's record.

    ``sparsity_matched`` is the Gini index of the map with only its top ``s`` pixels kept
    (:func:`~hsets_widgets.evaluation.sparsity.gini_at_support`), ``sparsity_within`` the Gini
    of those ``s`` values alone (:func:`~hsets_widgets.evaluation.sparsity.gini_within_top`).
    ``s`` is the smallest support among the maps (``"min"``) or ``round(f * H * W)`` for a
    fraction ``f``. Returns ``s``.
    """
    pms = {k: pixel_map(v) for k, v in maps.items()}
    n = next(iter(pms.values())).size
    if match_support == "min":
        s = max(1, min(support_size(m) for m in pms.values()))
    else:
        s = max(1, int(round(float(match_support) * n)))
    for name, m in pms.items():
        if name in records:
            records[name]["sparsity_matched"] = gini_at_support(m, s)
            records[name]["sparsity_within"] = gini_within_top(m, s)
            records[name]["matched_support"] = s
    return s


# ---- outputs -----------------------------------------------------------------------------
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


def read_results(path: Path) -> dict:
    """``{key: record}`` from a ``results.jsonl`` (later lines win; a torn line is skipped)."""
    done = {}
    if not path.exists():
        return done
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line; repair_results removes it before anything is appended
            if rec.get("status") == "ok":
                done[rec["key"]] = rec
    return done


def _append_jsonl(path: Path, record: dict) -> None:
    from hsets_widgets.files import dumps

    line = dumps(record) + "\n"      # one write of one whole line, strict JSON
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_save_npz(path: Path, arrays: dict) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def _map_key(name: str) -> str:
    return "m_" + re.sub(r"[^A-Za-z0-9]", "_", name) + "_" + hashlib.sha1(name.encode()).hexdigest()[:6]


def write_image_csv(path: Path, record: dict) -> None:
    """One row per method with every scalar metric and every curve point."""
    rows = []
    for name, m in record["methods"].items():
        row = {"image": record["path"], "label": record.get("label"), "target": record["target"],
               "method": name}
        row.update({k: m.get(k) for k in SCALAR_METRICS})
        for order in ORDERS:
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
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _mean_std(values) -> dict:
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))],
                   dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def summarize(records: Sequence[dict], methods: Sequence[str], orders: Sequence[str]) -> dict:
    """Mean +- std of every metric and mean curves per method over image ``records``."""
    out = {}
    for name in methods:
        recs = [r["methods"][name] for r in records if name in r.get("methods", {})]
        entry = {k: _mean_std([m.get(k) for m in recs]) for k in SCALAR_METRICS}
        curves = {}
        for order in orders:
            cs = [m[order] for m in recs if order in m]
            if not cs:
                continue
            acc = np.asarray([c["accuracy"] for c in cs])
            prob = np.asarray([c["probability"] for c in cs])
            curves[order] = {"percentages": cs[0]["percentages"],
                             "accuracy_mean": acc.mean(0).tolist(), "accuracy_std": acc.std(0).tolist(),
                             "probability_mean": prob.mean(0).tolist(),
                             "probability_std": prob.std(0).tolist(), "n": len(cs)}
            if all("label_accuracy" in c for c in cs):
                curves[order]["label_accuracy_mean"] = np.asarray(
                    [c["label_accuracy"] for c in cs]).mean(0).tolist()
        for kind in CURVE_KINDS:
            cs = [m[kind] for m in recs if kind in m]
            if cs:
                prob = np.asarray([c["probability"] for c in cs])
                acc = np.asarray([c["accuracy"] for c in cs])
                curves[kind] = {"percentages": cs[0]["fractions"],
                                "probability_mean": prob.mean(0).tolist(),
                                "probability_std": prob.std(0).tolist(),
                                "accuracy_mean": acc.mean(0).tolist(), "accuracy_std": acc.std(0).tolist(),
                                "n": len(cs)}
        entry["curves"] = curves
        out[name] = entry
    return out


def plot_curves(summary: dict, order: str, path: Path, title: str = "") -> Optional[Path]:
    """Mean ROAD curves (accuracy, probability) of every method for one order, as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods = [m for m, e in summary.items() if order in e.get("curves", {})]
    if not methods:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in methods:
        c = summary[name]["curves"][order]
        x = 100 * np.asarray(c["percentages"])
        for ax, key in zip(axes, ("accuracy", "probability")):
            mean = np.asarray(c[f"{key}_mean"])
            se = np.asarray(c[f"{key}_std"]) / math.sqrt(max(c["n"], 1))
            ax.plot(x, mean, marker="o", ms=3, label=f"{name} (n={c['n']})")
            ax.fill_between(x, mean - se, mean + se, alpha=0.15)
    axes[0].set_ylabel("accuracy (argmax = original prediction)")
    axes[1].set_ylabel("probability of the original class")
    xlabel = {"insertion": "% pixels inserted into the blurred image (most relevant first)",
              "deletion": "% pixels set to black (most relevant first)"}.get(
        order, f"% pixels removed ({order.upper()}, noisy linear imputation)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    what = order.capitalize() if order in CURVE_KINDS else f"ROAD {order.upper()}"
    fig.suptitle(title or f"{what}: mean over images (band: +-1 standard error)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _load_maps(path: Path, names) -> dict:
    """The stored maps of ``names`` (those present) from an image's ``.npz``."""
    if not path.exists():
        return {}
    with np.load(path) as z:
        stored = {k: z[k] for k in z.files}
    return {n: stored[_map_key(n)] for n in names if _map_key(n) in stored}


def _rescore(record: dict, out: Path, match_support, results_path: Path) -> None:
    """Recompute the matched-support sparsities of a done image from its stored maps."""
    maps = _load_maps(out / "maps" / f"{record['slug']}.npz", record["methods"])
    if maps and len(maps) == len(record["methods"]):
        record["matched_support"] = add_matched_sparsity(record["methods"], maps, match_support)
        write_image_csv(out / "images" / f"{record['slug']}.csv", record)
        _append_jsonl(results_path, record)


# ---- the run -----------------------------------------------------------------------------
def _config_fingerprint(classifier, percentages, orders, seed, noise, match_support, curves) -> dict:
    return {"model": getattr(classifier, "name", type(classifier).__name__),
            "percentages": [float(p) for p in percentages], "orders": list(orders), "seed": int(seed),
            "noise": float(noise), "match_support": match_support, "curves": list(curves)}


def run_evaluation(items: Sequence[ImageItem], classifier, out_dir: Union[str, Path],
                   methods: Sequence[Union[str, Method]] = DEFAULT_METHODS,
                   percentages: Union[str, Sequence[float]] = "fine",
                   orders: Sequence[str] = ORDERS, limit: Optional[int] = None, seed: int = 0,
                   noise: float = 0.01, batch_size: int = 16,
                   match_support: Union[str, float] = "min", progress: bool = True,
                   skipped: Optional[list] = None,
                   curves: Sequence[str] = CURVE_KINDS) -> dict:
    """Evaluate ``methods`` on ``items`` with ``classifier``; write results under ``out_dir``.

    Parameters
    ----------
    items : sequence of ImageItem
        From :func:`collect_images` or :func:`imagenette_items`.
    classifier : Classifier
        Maps ``(B, 3, H, W)`` in [0, 1] to logits; its ``input_size`` sets the crop.
    out_dir : path
        Output folder (created). Reusing it resumes an interrupted run.
    methods : sequence of str, callable or Method
        See :mod:`~hsets_widgets.evaluation.baselines`.
    percentages : str or sequence of float
        ``"fine"`` (1, 2, 5% and the reference grid), ``"road"``, ``"quantus"`` or fractions
        removed; the insertion and deletion curves use the same points (plus 0 and 1).
    orders : sequence of {"morf", "lerf"}
    limit : int, optional
        Only the first ``limit`` items (in the given order) are considered.
    seed : int
        Seeds SmoothGrad, random maps, H-Sets, the ROAD tie-breaker and noise.
    noise : float
        ROAD imputation noise.
    batch_size : int
        Imputed images per forward pass.
    match_support : "min" or float
        Support ``s`` for ``sparsity_matched`` (see :func:`add_matched_sparsity`).
    progress : bool
        Show a tqdm progress bar.
    skipped : list, optional
        Items already known to be unusable (counted in ``metrics.json``).
    curves : sequence of {"insertion", "deletion"}
        Insertion / deletion curves to compute besides ROAD (empty for none).

    Returns
    -------
    dict
        The content written to ``metrics.json``.
    """
    from hsets_widgets.files import check_output_dir, write_json

    out = check_output_dir(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(exist_ok=True)
    p = resolve_percentages(percentages)
    orders = tuple(orders)
    methods = [get_method(m, seed=seed) for m in methods]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods listed twice: {names}")
    curves = tuple(curves)
    for k in curves:
        if k not in CURVE_KINDS:
            raise ValueError(f"unknown curve {k!r}; use 'insertion' and/or 'deletion'")
    fingerprint = _config_fingerprint(classifier, p, orders, seed, noise, match_support, curves)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != fingerprint:
            diff = {k: (old.get(k), v) for k, v in fingerprint.items() if old.get(k) != v}
            raise ValueError(f"{out} holds results made with other settings {diff}; use another "
                             "--out folder (or delete it) to start afresh")
    else:
        write_json(cfg_path, fingerprint)

    items = list(items)[:limit] if limit is not None else list(items)
    results_path = out / "results.jsonl"
    repair_results(results_path)
    done = read_results(results_path)
    skipped = list(skipped or [])
    n_resumed = n_computed = 0
    size = getattr(classifier, "input_size", 224)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="evaluate", unit="image")
    for item in items:
        prev = done.get(item.key)
        missing = [m for m in methods if prev is None or m.name not in prev["methods"]]
        if not missing:
            n_resumed += 1
            if any("sparsity_within" not in r for r in prev["methods"].values()):
                _rescore(prev, out, match_support, results_path)  # written by an older version
            if bar is not None:
                bar.update(1)
            continue
        try:
            x = load_item(item, size)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, never fatal
            reason = f"{type(err).__name__}: {err}"
            warnings.warn(f"skipping {item.path}: {reason}", stacklevel=2)
            skipped.append({"path": str(item.path), "reason": reason})
            if bar is not None:
                bar.update(1)
            continue
        x = x.to(getattr(classifier, "device", torch.device("cpu")))
        probs0 = classify_batches(classifier, x.unsqueeze(0), 1)[0]
        target = int(probs0.argmax())
        record = prev or {"key": item.key, "path": str(item.path), "slug": item.slug,
                          "label": item.label, "target": target, "methods": {}}
        if record["target"] != target:
            raise RuntimeError(f"{item.path}: prediction changed from {record['target']} to {target} "
                               f"since the results in {out} were written; use another --out")
        map_path = out / "maps" / f"{item.slug}.npz"
        maps = _load_maps(map_path, record["methods"])
        for m in missing:
            if bar is not None:
                bar.set_postfix_str(f"{item.path.name}: {m.name}")
            t0 = time.perf_counter()
            try:
                amap = attribute(m, x, classifier, target=target, seed=seed)
            except AttributionShapeError as err:
                raise AttributionShapeError(f"{item.path}: {err}") from err
            except Exception as err:
                err.add_note(f"while explaining {item.path} with method {m.name!r}")
                raise
            t1 = time.perf_counter()
            rr = road(classifier, x, amap, p, orders, label=item.label, seed=seed, noise=noise,
                      batch_size=batch_size, original_probabilities=probs0)
            t2 = time.perf_counter()
            cr = (insertion_deletion(classifier, x, amap, p, curves, seed=seed, batch_size=batch_size,
                                     original_probabilities=probs0) if curves else None)
            record["methods"][m.name] = method_record(amap, rr, t1 - t0, t2 - t1, cr)
            maps[m.name] = amap.astype(np.float32)
        record.update(status="ok", probability=float(probs0[target]),
                      target_name=(classifier.class_name(target)
                                   if hasattr(classifier, "class_name") else str(target)))
        if len(maps) == len(record["methods"]):
            record["matched_support"] = add_matched_sparsity(record["methods"], maps, match_support)
        _atomic_save_npz(map_path, {_map_key(k): v for k, v in maps.items()})
        write_image_csv(out / "images" / f"{item.slug}.csv", record)
        _append_jsonl(results_path, record)
        done[item.key] = record
        n_computed += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    records = [done[i.key] for i in items if i.key in done]
    summary = summarize(records, names, orders)
    metrics = {"model": fingerprint["model"], "methods": summary,
               "n_images": len(records), "n_computed": n_computed, "n_resumed": n_resumed,
               "n_skipped": len(skipped), "skipped": skipped, "n_items": len(items),
               "percentages": [float(v) for v in p], "orders": list(orders), "seed": seed,
               "noise": noise, "match_support": match_support,
               "std": "population standard deviation (ddof=0) over images",
               "auc": "trapezoid over the percentages as given (x in fractions removed)",
               "torch": torch.__version__,
               "device": str(getattr(classifier, "device", "cpu"))}
    write_json(out / "metrics.json", metrics)
    for order in orders:
        plot_curves(summary, order, out / f"road_{order}.png")
    for kind in curves:
        plot_curves(summary, kind, out / f"{kind}.png")
    return metrics


def format_table(metrics: dict, keys: Sequence[str] = ("sparsity", "support_fraction", "morf_aopc",
                                                       "lerf_aopc", "insertion_auc", "deletion_auc")) -> str:
    """A Markdown table of mean +- std per method."""
    head = "| method | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for name, e in metrics["methods"].items():
        cells = []
        for k in keys:
            s = e.get(k, {})
            cells.append("-" if s.get("mean") is None else f"{s['mean']:.4f} +- {s['std']:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
