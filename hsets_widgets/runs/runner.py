"""Evaluate attribution methods over a folder of images: sparsity, ROAD, AOPC and insertion /
deletion, resumable.

:func:`run_evaluation` explains every image with every method, scores the maps
(:mod:`~hsets_widgets.metrics.sparsity`, :mod:`~hsets_widgets.metrics.road`) and
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

The images and labels come from :mod:`~hsets_widgets.runs.datasets`, the files are
written by :mod:`~hsets_widgets.runs.store` and summarised by
:mod:`~hsets_widgets.runs.report`; this module is the loop.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..methods.protocol import AttributionShapeError, Method
from ..methods.registry import attribute_sets, get_methods
from ..metrics.insertion import KINDS as CURVE_KINDS
from ..metrics.insertion import insertion_deletion
from ..metrics.interactions import N_MOVED, interaction_metrics, set_tests
from ..metrics.road import HEAD_CUTS, ROAD_ORDERS, check_choices, classify_batches, resolve_percentages, road
from ..metrics.sparsity import gini, gini_at_support, gini_within_top, pixel_map, support_size
from ..plumbing.files import check_output_dir, write_json
from ..plumbing.options import number
from ..plumbing.progress import ProgressFn, check_progress, report
from .datasets import ImageItem, load_item
from .report import plot_curves, summarize
from .store import (
    append_record,
    load_maps,
    lock_folder,
    map_key,
    read_results,
    repair_results,
    save_maps,
    set_entries,
    write_image_csv,
)

#: Default methods of ``hsets evaluate``.
DEFAULT_METHODS = ("hsets", "ig", "gradient", "smoothgrad", "random")


# ---- one image ---------------------------------------------------------------------------


def method_record(amap: np.ndarray, road_result, seconds: float, road_seconds: float,
                  curves_result=None) -> dict:
    """Scalar metrics and curves of one method on one image (matched sparsity added later).

    ``road_result`` is a :class:`~hsets_widgets.metrics.road.ROADResult`;
    ``curves_result`` an optional
    :class:`~hsets_widgets.metrics.insertion.InsertionDeletionResult`.
    """
    pm = pixel_map(amap)
    sup = support_size(pm)
    rec = {"sparsity": gini(pm), "support": sup, "support_fraction": sup / pm.size,
           "attribution_seconds": seconds, "road_seconds": road_seconds,
           "impute_seconds": road_result.impute_seconds,
           "classify_seconds": road_result.classify_seconds}
    for order, curve in road_result.curves.items():
        if order == "morf":
            for cut in HEAD_CUTS:
                if np.isclose(np.asarray(curve.percentages, dtype=np.float64), cut).any():
                    rec[f"morf_aopc_first{round(100 * cut)}"] = curve.aopc("probability", up_to=cut)
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
    (:func:`~hsets_widgets.metrics.sparsity.gini_at_support`), ``sparsity_within`` the Gini
    of those ``s`` values alone (:func:`~hsets_widgets.metrics.sparsity.gini_within_top`).
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
@dataclass(frozen=True)
class RunSettings:
    """What the numbers of an evaluation depend on, validated when made (:func:`run_settings`).

    The single-process loop and the Ray workers (:mod:`~hsets_widgets.runs.cluster`)
    score every image from the same settings, so both give the same records.
    """

    methods: tuple
    percentages: tuple
    orders: tuple
    seed: int
    noise: float
    batch_size: int
    match_support: Union[str, float]
    curves: tuple
    correct_only: bool = False
    interactions: bool = False
    moved_controls: int = N_MOVED

    @property
    def names(self) -> list:
        """The methods' names, the keys of every record's ``methods``."""
        return [m.name for m in self.methods]


def run_settings(methods: Sequence[Union[str, Method]] = DEFAULT_METHODS,
                 percentages: Union[str, Sequence[float]] = "fine", orders: Sequence[str] = ROAD_ORDERS,
                 seed: int = 0, noise: float = 0.01, batch_size: int = 16,
                 match_support: Union[str, float] = "min",
                 curves: Sequence[str] = CURVE_KINDS, correct_only: bool = False,
                 interactions: bool = False, moved_controls: int = N_MOVED,
                 methods_option: str = "methods") -> RunSettings:
    """Validate the settings of an evaluation (those of :func:`run_evaluation`).

    Parameters
    ----------
    methods : sequence of str, callable or Method
        See :mod:`~hsets_widgets.methods.registry`.
    percentages : str or sequence of float
        ``"fine"`` (1, 2, 5% and the reference grid), ``"road"``, ``"quantus"`` or fractions
        removed; the insertion and deletion curves use the same points (plus 0 and 1).
    orders : sequence of {"morf", "lerf"}
    seed : int
        Seeds SmoothGrad, random maps, H-Sets, the ROAD tie-breaker and noise.
    noise : float
        ROAD imputation noise.
    batch_size : int
        Imputed images per forward pass.
    match_support : "min" or float
        Support ``s`` for ``sparsity_matched`` (see :func:`add_matched_sparsity`).
    curves : sequence of {"insertion", "deletion"}
        Insertion / deletion curves to compute besides ROAD (empty for none).
    correct_only : bool
        Skip the images the model misclassifies or that have no label (the paper's protocol:
        correctly classified images only); they are listed under ``skipped`` with the reason.
    interactions : bool
        Also test every set of the methods that make sets (H-Sets) against its Hessian-free
        controls (:func:`~hsets_widgets.metrics.interactions.set_tests`, blur removal, 6
        parts) and record :data:`~hsets_widgets.metrics.interactions.INTERACTION_METRICS`;
        about 5 s per set on a 2-core CPU.
    moved_controls : int
        Moved copies of each set's shape among its controls (``n_moved``); with the nearest
        and top-IG controls a set's p-value is at least ``1 / (3 + moved_controls)``: the
        default 2 keeps it at 0.2 or more, 19 lets it reach 1/22 < 0.05, at ``(3 +
        moved_controls) / 5`` times the forward passes of the default.
    methods_option : str
        How the errors about ``methods`` name them (the CLI: ``--methods``).
    """
    seed, noise, batch_size = (number(k).check(v) for k, v in
                               (("seed", seed), ("noise", noise), ("batch_size", batch_size)))
    if match_support != "min":
        number("match_support").check(match_support)
    methods = get_methods(methods, seed=seed, where=methods_option)
    curves = tuple(curves)
    check_choices(curves, CURVE_KINDS, "curve")
    orders = tuple(orders) if not isinstance(orders, str) else (orders,)
    if not orders:
        raise ValueError("orders names no ROAD order; use 'morf' and/or 'lerf'")
    check_choices(orders, ROAD_ORDERS, "order")
    fractions = resolve_percentages(percentages)
    if not (fractions > 0).any():
        raise ValueError(f"percentages {fractions.tolist()} remove nothing (every AOPC would be 0); give at least "
                         "one fraction > 0, e.g. 0.1")
    if not isinstance(correct_only, bool):
        raise TypeError(f"correct_only must be True or False, got {correct_only!r}")
    if not isinstance(interactions, bool):
        raise TypeError(f"interactions must be True or False, got {interactions!r}")
    moved_controls = number("moved_controls").check(moved_controls)
    if moved_controls != N_MOVED and not interactions:
        raise ValueError(f"moved_controls={moved_controls} sets the interaction test's controls, which only "
                         "run with interactions=True (--interactions); add it or leave moved_controls out")
    return RunSettings(methods, tuple(float(v) for v in fractions),
                       orders, int(seed), float(noise), int(batch_size), match_support, curves,
                       correct_only, interactions, int(moved_controls))


def weights_fingerprint(classifier) -> Optional[str]:
    """SHA-256 of the model's weights (every tensor of its ``state_dict``: names, types, shapes
    and bytes), or None for a model that is not a torch module. A checkpoint overwritten by the
    next epoch of fine-tuning gives another fingerprint, however its file is named.
    """
    import hashlib

    module = getattr(classifier, "module", classifier)
    if not isinstance(module, torch.nn.Module):
        return None
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        try:
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        except (RuntimeError, TypeError):       # a type that cannot be viewed as bytes
            h.update(t.double().numpy().tobytes())
    return h.hexdigest()


def file_fingerprint(path: Union[str, Path]) -> Optional[dict]:
    """``{"size", "mtime_ns", "sha256"}`` of a file (None when it cannot be read): what tells a
    photo edited in place from the one a record was made from.
    """
    import hashlib

    try:
        st = Path(path).stat()
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}


def file_changed(path: Union[str, Path], old: Optional[dict]) -> bool:
    """Whether the file at ``path`` differs from the one ``old`` (:func:`file_fingerprint`)
    describes; the content is hashed only when its size or time changed.
    """
    if not old:
        return False                     # a record written before photos were fingerprinted
    try:
        st = Path(path).stat()
    except OSError:
        return True
    if st.st_size == old.get("size") and st.st_mtime_ns == old.get("mtime_ns"):
        return False
    now = file_fingerprint(path)
    return now is None or now["sha256"] != old.get("sha256")


def _config_fingerprint(classifier, settings: RunSettings) -> dict:
    fp = {"model": getattr(classifier, "name", type(classifier).__name__),
          "percentages": list(settings.percentages), "orders": list(settings.orders),
          "seed": settings.seed, "noise": settings.noise, "match_support": settings.match_support,
          "curves": list(settings.curves)}
    if settings.correct_only:      # only when set: folders written before the option stay valid
        fp["correct_only"] = True
    if settings.interactions:
        fp["interactions"] = True
    if settings.moved_controls != N_MOVED:  # likewise: folders written before the option stay valid
        fp["moved_controls"] = settings.moved_controls
    return fp


def open_results(out_dir: Union[str, Path], classifier, settings: RunSettings,
                 checkpoint: Optional[Union[str, Path]] = None) -> tuple:
    """Check (or create) and lock the output folder for ``settings``; ``(folder, {key: done
    record}, lock)`` (the lock is held until ``lock`` is closed: :func:`~.store.lock_folder`).

    A folder holding results made with other settings or other model weights (a checkpoint
    overwritten since: ``checkpoint`` names its file in the error), or being written by another
    run, is refused; a torn last record of ``results.jsonl`` is cut off first.
    """
    out = check_output_dir(out_dir)
    lock = lock_folder(out)                  # before anything in the folder is read or written
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(exist_ok=True)
    fingerprint = _config_fingerprint(classifier, settings)
    weights = weights_fingerprint(classifier)
    if weights is not None:
        fingerprint["weights"] = weights
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = read_config(cfg_path)
        if "weights" in fingerprint and "weights" not in old:   # written before weights were fingerprinted
            old = {**old, "weights": fingerprint["weights"]}
            write_json(cfg_path, old)
        if old.get("weights") != fingerprint.get("weights"):
            source = f"checkpoint {checkpoint}" if checkpoint else f"model {fingerprint['model']}"
            raise ValueError(f"{out} holds results of other model weights than those of {source} (sha256 "
                             f"{str(old.get('weights'))[:12]} then, {str(fingerprint.get('weights'))[:12]} "
                             "now: was it retrained or overwritten?); use another --out folder (or delete "
                             "it) to start afresh")
        if old != fingerprint:
            diff = {k: (old.get(k), fingerprint.get(k)) for k in {**old, **fingerprint}
                    if old.get(k) != fingerprint.get(k)}
            raise ValueError(f"{out} holds results made with other settings {diff}; use another "
                             "--out folder (or delete it) to start afresh")
    else:
        write_json(cfg_path, fingerprint)
    check_writable(out)
    results_path = out / "results.jsonl"
    repair_results(results_path)
    return out, read_results(results_path), lock


def check_writable(out: Path) -> None:
    """Refuse, before any work, a folder whose outputs were made read-only (``chmod -w
    metrics.json`` to keep a result): the atomic rename of a rewrite would replace them anyway.
    """
    import os
    import stat

    for name in ("results.jsonl", "metrics.json", "config.json", "road_morf.png", "road_lerf.png",
                 "insertion.png", "deletion.png"):
        path = out / name
        # the mode bits, not os.access: root may write anything, but a file made read-only is a wish
        if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & stat.S_IWUSR):
            raise PermissionError(f"{path} is read-only, and this run would rewrite it; make it writable "
                                  "(chmod u+w) or use another --out folder")


def read_config(path: Path) -> dict:
    """An evaluation folder's ``config.json``; ValueError naming the file when it is damaged."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}); restore it, or use "
                         "another --out folder") from None
    if not isinstance(old, dict):
        raise ValueError(f"{path} is not an evaluation config (a JSON object); restore it, or use "
                         "another --out folder")
    return old


def missing_methods(settings: RunSettings, prev: Optional[dict]) -> list:
    """The methods of ``settings`` that the done record ``prev`` (or None) has not scored."""
    return [m.name for m in settings.methods if prev is None or m.name not in prev["methods"]]


class SkippedImage(Exception):
    """An image left out of the evaluation, with the reason: counted, never fatal."""


class UnreadableImage(SkippedImage):
    """An image file that cannot be read."""


class MisclassifiedImage(SkippedImage):
    """An image the model gets wrong (or has no label for) under ``correct_only``."""


def read_item(item: ImageItem, classifier) -> torch.Tensor:
    """The image of ``item`` at the classifier's input size, or :class:`UnreadableImage`."""
    try:
        return load_item(item, getattr(classifier, "input_size", 224))
    except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, never fatal
        raise UnreadableImage(f"{type(err).__name__}: {err}") from err


class MethodProgress:
    """The progress of one method inside a photo: the engine's stages (``IG``, ``Hessian rows``,
    ``Archipelago``...) reported as ``"<method>: <stage>"`` so the bar names the method (tqdm adds
    the time left), and every stage left open closed when the method ends.
    """

    def __init__(self, progress: Optional[ProgressFn], method: str):
        self.progress, self.method, self.open = progress, method, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Pass ``stage`` on as ``"<method>: <stage>"``."""
        name = f"{self.method}: {stage}"
        if done >= total:
            self.open.pop(name, None)
        else:
            self.open[name] = total
        self.progress(name, done, total)

    def finish(self) -> None:
        """Close the stages the method left unfinished (adaptive steps, an early stop)."""
        for name, total in list(self.open.items()):
            self.progress(name, total, total)
        self.open.clear()


def _say(progress, what: str) -> None:
    """Show what the photo's methods bar is doing now (the method's name and step), where the
    progress reporter can show it (:class:`~hsets_widgets.plumbing.progress.TqdmProgress`).
    """
    postfix = getattr(progress, "postfix", None)
    if postfix is not None:
        postfix("methods", now=what)


def evaluate_item(item: ImageItem, classifier, settings: RunSettings, prev: Optional[dict] = None,
                  prev_maps: Optional[dict] = None, x: Optional[torch.Tensor] = None,
                  progress: Optional[ProgressFn] = None) -> tuple:
    """Explain one image with the methods ``prev`` lacks and score them; no file is written.

    ``x`` is the image as :func:`read_item` gives it (read here when omitted; a Ray worker gets
    it from the driver, so the files need not be on the worker's machine). Returns ``(record,
    maps)``: the image's whole record (``prev``'s methods kept) and its maps by method name
    (float32), with the :func:`~hsets_widgets.runs.store.set_entries` of the methods that made
    sets. Raises :class:`UnreadableImage` for a file that cannot be read,
    :class:`MisclassifiedImage` for one the model gets wrong under ``correct_only``.
    ``progress`` follows the photo's methods (stage ``"methods"``, the current one named) and
    each method's own stages (``"<method>: <stage>"``, see :class:`MethodProgress`).
    """
    x = read_item(item, classifier) if x is None else x
    x = x.to(getattr(classifier, "device", torch.device("cpu")))
    probs0 = classify_batches(x.unsqueeze(0), classifier, 1)[0]
    target = int(probs0.argmax())
    if settings.correct_only and target != item.label:
        why = "no label" if item.label is None else f"label {item.label}"
        raise MisclassifiedImage(f"misclassified: predicted {target}, {why} (--correct-only)")
    record = json.loads(json.dumps(prev)) if prev else {
        "key": item.key, "path": str(item.path), "slug": item.slug, "label": item.label,
        "target": target, "methods": {}}
    if record["target"] != target:
        raise RuntimeError(f"{item.path}: prediction changed from {record['target']} to {target} "
                           "since these results were written; use another --out")
    maps = dict(prev_maps or {})
    todo = missing_methods(settings, prev)
    report(progress, "methods", 0, len(todo))
    for k, m in enumerate(m for m in settings.methods if m.name in todo):
        record["methods"][m.name], made = score_method(x, classifier, m, item, target, probs0, settings, progress)
        maps[m.name] = made.map.astype(np.float32)
        maps.update(set_entries(m.name, made.sets))
        report(progress, "methods", k + 1, len(todo))
    record.update(status="ok", probability=float(probs0[target]),
                  target_name=(classifier.class_name(target)
                               if hasattr(classifier, "class_name") else str(target)))
    match_matched_support(record, maps, settings)
    return record, maps


def _followed(progress, name: str, work):
    """``work(inner)`` with the method's own progress bar (``"<method>: <stage>"``), closed after."""
    inner = MethodProgress(progress, name) if progress is not None else None
    try:
        return work(inner)
    finally:
        if inner is not None:
            inner.finish()


def score_method(x: torch.Tensor, classifier, method: Method, item: ImageItem, target: int, probs0,
                 settings: RunSettings, progress: Optional[ProgressFn] = None) -> tuple:
    """One method on one image: its map, ROAD, the insertion/deletion curves and (when asked
    and the method makes sets) the interaction test. Returns ``(method record, MapWithSets)``.
    """
    p, seed, name = settings.percentages, settings.seed, method.name
    t0 = time.perf_counter()
    _say(progress, name)
    try:
        made = _followed(progress, name, lambda inner: attribute_sets(x, classifier, target, method=method,
                                                                      seed=seed, progress=inner))
    except AttributionShapeError as err:
        raise AttributionShapeError(f"{item.path}: {err}") from err
    except Exception as err:
        err.add_note(f"while explaining {item.path} with method {name!r}")
        raise
    amap = made.map
    t1 = time.perf_counter()
    _say(progress, f"{name} (ROAD)")
    rr = road(x, classifier, amap, p, settings.orders, label=item.label, seed=seed,
              noise=settings.noise, batch_size=settings.batch_size, original_probabilities=probs0)
    t2 = time.perf_counter()
    cr = (insertion_deletion(x, classifier, amap, p, settings.curves, seed=seed,
                             batch_size=settings.batch_size, original_probabilities=probs0)
          if settings.curves else None)
    entry = method_record(amap, rr, t1 - t0, t2 - t1, cr)
    if settings.interactions and made.sets:
        t3 = time.perf_counter()
        _say(progress, f"{name} (interaction test)")
        tests = _followed(progress, name, lambda inner: set_tests(
            x.detach().cpu(), classifier, target, made.sets, made.labels, made.attribution, seed=seed,
            progress=inner, n_moved=settings.moved_controls))
        entry.update(interaction_metrics(tests), interaction_seconds=time.perf_counter() - t3)
    return entry, made


def match_matched_support(record: dict, maps: dict, settings: RunSettings) -> bool:
    """Add matched-support sparsity to ``record`` over the maps of this run's methods only
    (``matched_over`` names them), so every image of a summary is matched over the same methods,
    whatever an earlier run with other methods stored. False when a map is missing.
    """
    names = settings.names
    if not all(n in maps and n in record["methods"] for n in names):
        return False
    record["matched_support"] = add_matched_sparsity(record["methods"], {n: maps[n] for n in names},
                                                     settings.match_support)
    record["matched_over"] = list(names)
    return True


def stored_maps(out: Path, item: ImageItem, prev: Optional[dict]) -> dict:
    """The maps an earlier run stored for ``item`` (those of ``prev``'s methods)."""
    return load_maps(out / "maps" / f"{item.slug}.npz", prev["methods"], with_sets=True) if prev else {}


def store_item(out: Path, record: dict, maps: dict) -> None:
    """Write one finished image: its maps, its CSV, then its line of ``results.jsonl``.

    The record is appended last, so an image counts as done only once all its files exist.
    """
    save_maps(out / "maps" / f"{record['slug']}.npz", {map_key(k): v for k, v in maps.items()})
    write_image_csv(out / "images" / f"{record['slug']}.csv", record)
    append_record(out / "results.jsonl", record)


def failed_record(item: ImageItem, reason: str, attempts: int) -> dict:
    """The line recorded for an image no worker could finish (never counted as done)."""
    return {"key": item.key, "path": str(item.path), "slug": item.slug, "status": "failed",
            "reason": reason, "attempts": attempts}


def write_summary(out: Path, classifier, items: Sequence[ImageItem], done: dict,
                  settings: RunSettings, counts: dict, skipped: Sequence[dict],
                  failed: Sequence[dict] = (), extra: Optional[dict] = None) -> dict:
    """Write ``metrics.json`` and the mean-curve plots of the done ``items``; return the metrics."""
    records = [done[i.key] for i in items if i.key in done]
    summary = summarize(records, settings.names, settings.orders)
    metrics = {"model": _config_fingerprint(classifier, settings)["model"], "methods": summary,
               "n_images": len(records), "n_computed": counts.get("computed", 0),
               "n_resumed": counts.get("resumed", 0),
               "n_skipped": len(skipped), "skipped": list(skipped),
               "n_failed": len(failed), "failed": list(failed), "n_items": len(items),
               "percentages": list(settings.percentages), "orders": list(settings.orders),
               "seed": settings.seed, "noise": settings.noise, "match_support": settings.match_support,
               "std": "population standard deviation (ddof=0) over images",
               "auc": "trapezoid over the percentages as given (x in fractions removed)",
               "torch": torch.__version__,
               "device": str(getattr(classifier, "device", "cpu")), **(extra or {})}
    write_json(out / "metrics.json", metrics)
    for order in settings.orders:
        plot_curves(summary, order, out / f"road_{order}.png")
    for kind in settings.curves:
        plot_curves(summary, kind, out / f"{kind}.png")
    return metrics


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (links resolved)."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


@dataclass
class RunState:
    """An evaluation under way: its folder, its items, what is done, and what was counted.

    The single-process loop (:func:`run_evaluation`) and the Ray driver
    (:mod:`~hsets_widgets.runs.cluster`) record every image through it, so both write
    the same files.
    """

    out: Path
    classifier: object
    settings: RunSettings
    items: list
    done: dict
    skipped: list
    failed: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"resumed": 0, "computed": 0})

    lock: object = None
    files: dict = field(default_factory=dict)

    @classmethod
    def open(cls, items: Sequence[ImageItem], classifier, out_dir: Union[str, Path], settings: RunSettings,
             limit: Optional[int] = None, skipped: Optional[list] = None,
             checkpoint: Optional[Union[str, Path]] = None) -> RunState:
        """Open (or resume) the folder ``out_dir`` for the first ``limit`` of ``items``; files
        inside ``out_dir`` (its own plots, when it lies in an input folder) are left out.
        ``checkpoint`` (the model's file, if any) is named when the weights changed.
        """
        if limit is not None:
            number("limit").check(limit)
        out, done, lock = open_results(out_dir, classifier, settings, checkpoint)
        items = [i for i in items if not inside(i.path, out)]
        items = items[:limit] if limit is not None else items
        return cls(out, classifier, settings, items, done, list(skipped or []), lock=lock)

    def close(self) -> None:
        """Release the folder's lock (the end of the process does too)."""
        if self.lock is not None:
            self.lock.close()

    def missing(self, item: ImageItem) -> list:
        """The methods ``item`` still needs (none once it is done). A photo edited since its
        record was written is evaluated again from the start, with a warning naming it.
        """
        prev = self.done.get(item.key)
        if prev is not None and file_changed(item.path, prev.get("file")):
            warnings.warn(f"{item.path} changed since it was evaluated (its content differs from the "
                          "record's); evaluating it again", stacklevel=2)
            del self.done[item.key]
            prev = None
        if item.key not in self.files:
            self.files[item.key] = prev.get("file") if prev and prev.get("file") else file_fingerprint(item.path)
        return missing_methods(self.settings, prev)

    def read(self, item: ImageItem) -> torch.Tensor:
        """The image of ``item``, as :func:`read_item` gives it."""
        return read_item(item, self.classifier)

    def previous(self, item: ImageItem) -> tuple:
        """``(done record or None, its stored maps)`` of ``item``."""
        prev = self.done.get(item.key)
        return prev, stored_maps(self.out, item, prev)

    def store(self, record: dict, maps: dict) -> None:
        """Write one finished image (:func:`store_item`) with its file's fingerprint, and count it done."""
        if self.files.get(record["key"]) is not None:
            record["file"] = self.files[record["key"]]
        store_item(self.out, record, maps)
        self.done[record["key"]] = record
        self.counts["computed"] += 1

    def skip(self, item: ImageItem, reason: Union[SkippedImage, str]) -> None:
        """Count ``item`` skipped with ``reason`` (an unreadable file also warns)."""
        if isinstance(reason, UnreadableImage):
            warnings.warn(f"skipping {item.path}: {reason}", stacklevel=3)
        self.skipped.append({"path": str(item.path), "reason": str(reason)})

    def fail(self, item: ImageItem, reason: str, attempts: int) -> None:
        """Record ``item`` as failed (a ``"status": "failed"`` line, never counted as done)."""
        append_record(self.out / "results.jsonl", failed_record(item, reason, attempts))
        self.failed.append({"path": str(item.path), "reason": reason, "attempts": attempts})

    def summary(self, extra: Optional[dict] = None) -> dict:
        """Write ``metrics.json`` and the plots (:func:`write_summary`); return the metrics.

        A resumed record whose matched support was taken over other methods (those of an
        earlier run) is matched again over this run's, from its stored maps, for the summary.
        """
        done = dict(self.done)
        for item in self.items:
            rec = done.get(item.key)
            if rec is None or rec.get("matched_over") == self.settings.names:
                continue
            rec = json.loads(json.dumps(rec))
            if match_matched_support(rec, stored_maps(self.out, item, rec), self.settings):
                done[item.key] = rec
        return write_summary(self.out, self.classifier, self.items, done, self.settings, self.counts,
                             self.skipped, self.failed, extra)


def run_evaluation(items: Sequence[ImageItem], classifier, out_dir: Union[str, Path],
                   methods: Sequence[Union[str, Method]] = DEFAULT_METHODS,
                   percentages: Union[str, Sequence[float]] = "fine",
                   orders: Sequence[str] = ROAD_ORDERS, limit: Optional[int] = None, seed: int = 0,
                   noise: float = 0.01, batch_size: int = 16,
                   match_support: Union[str, float] = "min", progress: Optional[ProgressFn] = None,
                   skipped: Optional[list] = None,
                   curves: Sequence[str] = CURVE_KINDS, correct_only: bool = False,
                   interactions: bool = False, moved_controls: int = N_MOVED,
                   checkpoint: Optional[Union[str, Path]] = None) -> dict:
    """Evaluate ``methods`` on ``items`` with ``classifier``; write results under ``out_dir``.

    Parameters
    ----------
    items : sequence of ImageItem
        From :func:`collect_images` or :func:`imagenette_items`.
    classifier : Classifier
        Maps ``(B, 3, H, W)`` in [0, 1] to logits; its ``input_size`` sets the crop.
    out_dir : path
        Output folder (created). Reusing it resumes an interrupted run.
    methods, percentages, orders, seed, noise, batch_size, match_support, curves, correct_only
        The settings the numbers depend on: see :func:`run_settings`.
    interactions, moved_controls
        Whether each set is tested against its controls, and how many of those are moved
        copies: see :func:`run_settings`.
    limit : int, optional
        Only the first ``limit`` items (in the given order) are considered.
    progress : callable, optional
        ``progress("evaluate", images done, images)`` after every image, ``progress("methods",
        done, methods)`` within each photo and ``progress("<method>: <stage>", done, total)``
        within each method (the CLI passes a :class:`~hsets_widgets.plumbing.progress.TqdmProgress`: a
        bar per stage, with the method's name and the time left).
    skipped : list, optional
        Items already known to be unusable (counted in ``metrics.json``).
    checkpoint : path, optional
        The file the model's weights came from, named when a rerun finds other weights (the
        weights themselves are fingerprinted in ``config.json``; each photo in its record).

    Returns
    -------
    dict
        The content written to ``metrics.json``.

    See Also
    --------
    hsets_widgets.runs.cluster.run_on_ray : the same run on a Ray cluster.
    """
    progress = check_progress(progress)
    settings = run_settings(methods, percentages, orders, seed, noise, batch_size, match_support, curves,
                            correct_only, interactions, moved_controls)
    run = RunState.open(items, classifier, out_dir, settings, limit, skipped, checkpoint)
    try:
        report(progress, "evaluate", 0, len(run.items))
        for k, item in enumerate(run.items):
            evaluate_here(run, item, progress)
            report(progress, "evaluate", k + 1, len(run.items))
        return run.summary()
    finally:
        run.close()


def evaluate_here(run: RunState, item: ImageItem, progress: Optional[ProgressFn] = None) -> None:
    """Evaluate one item of ``run`` in this process and store it (or count it resumed or skipped);
    ``progress`` follows its methods (:func:`evaluate_item`).
    """
    if not run.missing(item):
        run.counts["resumed"] += 1
        return
    try:
        record, maps = evaluate_item(item, run.classifier, run.settings, *run.previous(item), progress=progress)
    except SkippedImage as err:
        run.skip(item, err)
    else:
        run.store(record, maps)
