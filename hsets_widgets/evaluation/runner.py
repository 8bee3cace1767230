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

The images and labels come from :mod:`~hsets_widgets.evaluation.datasets`, the files are
written by :mod:`~hsets_widgets.evaluation.store` and summarised by
:mod:`~hsets_widgets.evaluation.report`; this module is the loop.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..progress import ProgressFn, check_progress, report
from .baselines import Method, attribute, get_method
from .datasets import ImageItem, load_item
from .insertion import KINDS as CURVE_KINDS
from .insertion import insertion_deletion
from .report import plot_curves, summarize
from .road import ORDERS, classify_batches, resolve_percentages, road
from .sparsity import AttributionShapeError, gini, gini_at_support, gini_within_top, pixel_map, support_size
from .store import append_record, load_maps, map_key, read_results, repair_results, save_maps, write_image_csv

#: Default methods of ``hsets evaluate``.
DEFAULT_METHODS = ("hsets", "ig", "gradient", "smoothgrad", "random")


# ---- one image ---------------------------------------------------------------------------


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
                   match_support: Union[str, float] = "min", progress: Optional[ProgressFn] = None,
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
    progress : callable, optional
        ``progress("evaluate", images done, images)`` after every image (the CLI passes a
        :class:`~hsets_widgets.progress.TqdmProgress`).
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

    progress = check_progress(progress)
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

    n_items, n_done = len(items), 0
    report(progress, "evaluate", 0, n_items)
    for item in items:
        prev = done.get(item.key)
        missing = [m for m in methods if prev is None or m.name not in prev["methods"]]
        if not missing:
            n_resumed += 1
            n_done += 1
            report(progress, "evaluate", n_done, n_items)
            continue
        try:
            x = load_item(item, size)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, never fatal
            reason = f"{type(err).__name__}: {err}"
            warnings.warn(f"skipping {item.path}: {reason}", stacklevel=2)
            skipped.append({"path": str(item.path), "reason": reason})
            n_done += 1
            report(progress, "evaluate", n_done, n_items)
            continue
        x = x.to(getattr(classifier, "device", torch.device("cpu")))
        probs0 = classify_batches(x.unsqueeze(0), classifier, 1)[0]
        target = int(probs0.argmax())
        record = prev or {"key": item.key, "path": str(item.path), "slug": item.slug,
                          "label": item.label, "target": target, "methods": {}}
        if record["target"] != target:
            raise RuntimeError(f"{item.path}: prediction changed from {record['target']} to {target} "
                               f"since the results in {out} were written; use another --out")
        map_path = out / "maps" / f"{item.slug}.npz"
        maps = load_maps(map_path, record["methods"])
        for m in missing:
            t0 = time.perf_counter()
            try:
                amap = attribute(x, classifier, m, target=target, seed=seed)
            except AttributionShapeError as err:
                raise AttributionShapeError(f"{item.path}: {err}") from err
            except Exception as err:
                err.add_note(f"while explaining {item.path} with method {m.name!r}")
                raise
            t1 = time.perf_counter()
            rr = road(x, classifier, amap, p, orders, label=item.label, seed=seed, noise=noise,
                      batch_size=batch_size, original_probabilities=probs0)
            t2 = time.perf_counter()
            cr = (insertion_deletion(x, classifier, amap, p, curves, seed=seed, batch_size=batch_size,
                                     original_probabilities=probs0) if curves else None)
            record["methods"][m.name] = method_record(amap, rr, t1 - t0, t2 - t1, cr)
            maps[m.name] = amap.astype(np.float32)
        record.update(status="ok", probability=float(probs0[target]),
                      target_name=(classifier.class_name(target)
                                   if hasattr(classifier, "class_name") else str(target)))
        if len(maps) == len(record["methods"]):
            record["matched_support"] = add_matched_sparsity(record["methods"], maps, match_support)
        save_maps(map_path, {map_key(k): v for k, v in maps.items()})
        write_image_csv(out / "images" / f"{item.slug}.csv", record)
        append_record(results_path, record)
        done[item.key] = record
        n_computed += 1
        n_done += 1
        report(progress, "evaluate", n_done, n_items)

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


