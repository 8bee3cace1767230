"""Sweep growth settings on one image and score every explanation's faithfulness.

:func:`sweep` grows the explanation of an :class:`~hsets_widgets.hsets.explain.Explainer` for every
combination of the swept settings (``mu=[2, 4, 8]``, ``nu=[...]``, ``threshold=[...]`` or any
other setting), reusing its cached IG, segmentation and Hessian rows, and scores each heatmap
exactly as ``hsets evaluate`` scores the method ``hsets:<same settings>``: ROAD MoRF / LeRF
AOPC on the same percentages, seed and noise, sparsity and support. IG's and a random map's
scores on the same image come as reference rows. The engine itself does not import this module
(evaluation sits above it), so the sweep is a function of the explainer, not a method.
"""
from __future__ import annotations

import itertools
import time
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..methods.protocol import pixel_sets
from ..methods.registry import attribute
from ..metrics.interactions import interaction_metrics, set_tests
from ..metrics.road import ROAD_ORDERS, classify_batches, resolve_percentages, road
from ..plumbing.common import to_numpy
from ..plumbing.progress import CancelToken, ProgressFn, check_progress, report
from .report import pyplot, save_png
from .runner import method_record

#: the scalar columns of a sweep table, besides the swept settings
COLUMNS = ("method", "morf_aopc", "lerf_aopc", "morf_aopc_accuracy", "lerf_aopc_accuracy",
           "sparsity", "support_fraction", "n_sets", "seconds")


def map_scores(x: torch.Tensor, classifier, attribution, percentages: Union[str, Sequence[float]] = "road",
               orders: Sequence[str] = ROAD_ORDERS, seed: int = 0, noise: float = 0.01, batch_size: int = 16,
               original_probabilities: Optional[torch.Tensor] = None) -> dict:
    """The faithfulness numbers of one map, as ``hsets evaluate`` records them (scalars only)."""
    p = resolve_percentages(percentages)
    rr = road(x, classifier, attribution, p, orders, seed=seed, noise=noise, batch_size=batch_size,
              original_probabilities=original_probabilities)
    rec = method_record(np.asarray(attribution, dtype=np.float64), rr, 0.0, rr.impute_seconds + rr.classify_seconds)
    return {k: v for k, v in rec.items() if not isinstance(v, dict)}


def grid_points(settings: dict) -> list:
    """Every combination of the swept ``settings`` (``{"mu": [2, 4], "nu": [8]}`` ->
    ``[{"mu": 2, "nu": 8}, {"mu": 4, "nu": 8}]``), with a clear error for a value that is not a list.
    """
    for key, values in settings.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ValueError(f"sweep {key}= takes a list of values, got {values!r}")
        if len(list(values)) == 0:
            raise ValueError(f"sweep {key}= got an empty list")
    keys = list(settings)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(settings[k]) for k in keys))]


def sweep(explainer, progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
          percentages: Union[str, Sequence[float]] = "road", orders: Sequence[str] = ROAD_ORDERS,
          seed: int = 0, noise: float = 0.01, batch_size: int = 16, references: bool = True,
          as_frame: bool = True, seeds=None, interactions: bool = False, **settings):
    """Score the explanation of ``explainer`` at every combination of ``settings``.

    Parameters
    ----------
    explainer : Explainer
        The image, model and base settings; its cached stages are shared by every point.
    settings : lists of values
        What to sweep, e.g. ``mu=[2, 4, 8, 16]`` or ``mu=[...], nu=[...]`` (the product).
        Every combination is validated before any work starts.
    percentages, orders, seed, noise, batch_size :
        As for ``hsets evaluate`` (the same numbers for the same settings).
    references : bool
        Add one row for IG and one for a random map on the same image.
    as_frame : bool
        Return a pandas DataFrame when pandas is installed (else the list of records).
    seeds : list of Seed, optional
        Grow these seeds at every point (e.g. the sets a user is looking at) instead of the
        automatic ones; without it a point is the whole automatic explanation, as
        ``hsets evaluate`` computes it.
    interactions : bool
        Also test every grown set against its Hessian-free controls and add the columns of
        :data:`~hsets_widgets.metrics.interactions.INTERACTION_METRICS` to the H-Sets rows
        (as ``hsets evaluate --interactions``; about 5 s per set on a 2-core CPU).

    Returns
    -------
    DataFrame or list of dict
        One row per combination (``method="hsets"``, the swept settings, AOPC in both orders,
        sparsity, support, sets, seconds), then the reference rows (swept settings None).
    """
    progress = check_progress(progress)
    if not settings:
        raise ValueError("nothing to sweep: pass lists of values, e.g. sweep(ex, mu=[2, 4, 8])")
    grid = grid_points(settings)
    explainers = [explainer.with_settings(**combo) for combo in grid]   # bad values fail here, first
    resolve_percentages(percentages)
    x, clf = explainer.x.detach(), explainer.classifier
    probs0 = classify_batches(x.unsqueeze(0), clf, 1)[0]
    n_total = len(grid) + (2 if references else 0)
    rows = []
    for k, (combo, ex) in enumerate(zip(grid, explainers)):
        report(progress, "sweep", k, n_total, cancel)
        t0 = time.perf_counter()
        heat, sets = grown_heatmap(ex, seeds, cancel)
        scores = map_scores(x, clf, heat, percentages, orders, seed, noise, batch_size, probs0)
        if interactions:
            tests = set_tests(x.cpu(), clf, explainer.target, pixel_sets(sets, ex.shape, ex.config.features),
                              ex.segment().labels, to_numpy(ex.attribution().attribution, None),
                              cancel=cancel, seed=seed)
            scores.update(interaction_metrics(tests))
        rows.append({"method": "hsets", **combo, **scores, "n_sets": len(sets),
                     "seconds": time.perf_counter() - t0})
    if references:
        for k, name in enumerate(("ig", "random")):
            report(progress, "sweep", len(grid) + k, n_total, cancel)
            t0 = time.perf_counter()
            amap = attribute(x, clf, explainer.target, method=name, seed=seed)
            scores = map_scores(x, clf, amap, percentages, orders, seed, noise, batch_size, probs0)
            rows.append({"method": name, **{key: None for key in settings}, **scores, "n_sets": None,
                         "seconds": time.perf_counter() - t0})
    report(progress, "sweep", n_total, n_total)
    return as_table(rows) if as_frame else rows


def grown_heatmap(explainer, seeds=None, cancel: Optional[CancelToken] = None) -> tuple:
    """``(heatmap, sets)`` of ``explainer``: its whole automatic explanation, or the given
    ``seeds`` grown and valued.
    """
    if seeds is None:
        expl = explainer.run(None, cancel)
        return expl.heatmap, list(expl.sets)
    sets = explainer.grow_and_value(seeds, cancel=cancel)
    return explainer.heatmap(sets), sets


def as_table(records: list):
    """A pandas DataFrame of ``records`` if pandas is installed, else the records themselves."""
    try:
        import pandas as pd
    except ImportError:
        return records
    return pd.DataFrame.from_records(records)


def plot_sweep(records: list, key: str, path, title: str = "", others: Sequence[str] = ()):
    """AOPC (both orders) and sparsity against the swept ``key`` (one line per combination of
    the ``others`` swept settings), IG and random as reference lines; written to ``path`` (PNG)
    atomically. Returns the path.
    """
    plt = pyplot()
    hs = [r for r in records if r["method"] == "hsets"]
    refs = {r["method"]: r for r in records if r["method"] != "hsets"}
    values = list(dict.fromkeys(r[key] for r in hs))
    numeric = all(isinstance(v, (int, float)) for v in values)
    where = {v: (v if numeric else i) for i, v in enumerate(values)}
    groups = {}
    for r in hs:
        groups.setdefault(tuple(r[o] for o in others), []).append(r)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (("morf_aopc", "MoRF AOPC (higher: more faithful)"),
              ("lerf_aopc", "LeRF AOPC (lower: more faithful)"), ("sparsity", "sparsity (Gini)"))
    for ax, (col, label) in zip(axes, panels):
        for g, rs in groups.items():
            name = "H-Sets" + (" (" + ", ".join(f"{o}={v}" for o, v in zip(others, g)) + ")" if others else "")
            ax.plot([where[r[key]] for r in rs], [r[col] for r in rs], marker="o", label=name)
        for name, style in (("ig", dict(color="#e53935", ls="--")), ("random", dict(color="#757575", ls=":"))):
            if name in refs:
                ax.axhline(refs[name][col], label=name.upper() if name == "ig" else name, **style)
        ax.set_xlabel(key)
        ax.set_title(label, fontsize=10)
        if not numeric:
            ax.set_xticks(list(where.values()), [str(v) for v in values])
        elif len(values) > 2 and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or f"Faithfulness against {key}")
    fig.tight_layout()
    return save_png(fig, path, dpi=110)
