"""Reproduce the protocol of the H-Sets workshop paper's Table 1 (sparsity) and Figure 1 (ROAD MoRF).

The paper: Imagenette, ResNet50, H-Sets (mu = half the seed's attribution, nu = 2000) against
Integrated Gradients; Sparsity = Gini index (Quantus ``Sparseness``), ROAD with MoRF order.
Here: the offline default classifier (EfficientNet-Lite0, ImageNet-1k weights; no ResNet50
ImageNet weights can be had offline), the photos in ``../shared/images/imagenette`` (one per
Imagenette class) and ``../shared/images/imagenet-sample`` (90 ImageNet classes).

Each dataset is evaluated with :func:`hsets_widgets.runs.run_evaluation` into
``OUT/<dataset>/`` (resumable: rerun the same command to continue), then ``OUT/table.md``
(mean +- std per method and dataset) and ``OUT/figure1_morf.png`` (mean MoRF accuracy and
probability curves, Figure 1's protocol) are written.

Example (what made ``results/paper/``; see its README for the exact command line)::

    python bench/reproduce_paper.py --out results/paper
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
DATASETS = {"imagenette": SHARED / "imagenette", "imagenet-sample": SHARED / "imagenet-sample"}
TABLE_METRICS = ("sparsity", "sparsity_matched", "sparsity_within", "support_fraction", "morf_auc",
                 "morf_probability_auc", "lerf_auc", "attribution_seconds")
PAPER = {"H-Sets (paper)": (0.9565, 0.016), "IG (paper)": (0.8235, 0.407)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "results" / "paper"), help="output folder")
    p.add_argument("--datasets", default="imagenette,imagenet-sample",
                   help="comma-separated: imagenette, imagenet-sample (default: both)")
    p.add_argument("--methods", default="hsets:paper,ig,gradient,smoothgrad,random",
                   help="methods for run_evaluation; options of one method joined with '+'")
    p.add_argument("--limit", type=int, default=None, help="first N images of each dataset")
    p.add_argument("--percentages", default="road", help="'road', 'quantus' or comma-separated fractions")
    p.add_argument("--orders", default="morf,lerf")
    p.add_argument("--model", default=None, help="default: the offline EfficientNet-Lite0")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small-percentages", default="0.0005,0.001,0.002,0.005,0.01,0.02,0.05",
                   help="fractions for the extra MoRF run from the stored maps ('' to skip)")
    return p.parse_args(argv)


def fmt(s: dict) -> str:
    return "-" if not s or s.get("mean") is None else f"{s['mean']:.4f} +- {s['std']:.4f}"


def write_table(out: Path, all_metrics: dict, command: str) -> Path:
    lines = ["# Sparsity and ROAD: paper protocol on this toolkit", "",
             "Commands (in order; each resumes the folders of the earlier ones):", "",
             *[f"    {c}" for c in (out / "commands.txt").read_text().splitlines()], "",
             "Mean +- population std over images. sparsity: Gini index as Quantus Sparseness "
             "computes it (pixel maps, channels summed). sparsity_matched: Gini of each map "
             "restricted to its top-s pixels, s = the smallest support among the methods on that "
             "image; sparsity_within: Gini of those s values alone (zeros dropped). morf_auc / lerf_auc: trapezoid area of the ROAD accuracy curve (argmax = "
             "original prediction) over the percentages removed.", ""]
    for ds, m in all_metrics.items():
        lines += [f"## {ds} ({m['n_images']} images, {m['n_skipped']} skipped, model {m['model']}, "
                  f"percentages {m['percentages']})", "",
                  "| method | " + " | ".join(TABLE_METRICS) + " |",
                  "|" + "---|" * (len(TABLE_METRICS) + 1)]
        for name, e in m["methods"].items():
            lines.append(f"| {name} | " + " | ".join(fmt(e.get(k)) for k in TABLE_METRICS) + " |")
        lines.append("")
    lines += ["## The paper's Table 1 (Imagenette, ResNet50)", "", "| method | sparsity |", "|---|---|"]
    lines += [f"| {k} | {v[0]:.4f} +- {v[1]:.3f} |" for k, v in PAPER.items()]
    path = out / "table.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def reduction_table(out: Path, datasets) -> str:
    """Gini of the stored maps under three channel reductions (how a map reaches Quantus).

    ``sum``: signed sum over channels (this toolkit's default, a (B, 1, H, W) map);
    ``abs_sum``: sum of absolute values; ``channels``: the (3, H, W) map flattened as it is
    (3 H W values), which is what Quantus scores if handed channel maps.
    """
    from hsets_widgets.metrics.sparsity import gini
    from hsets_widgets.runs.store import load_maps, read_results

    lines = ["## Sparsity under other channel reductions (from the stored maps)", "",
             "sum: signed channel sum (the table above); abs_sum: sum of |a| over channels; "
             "channels: the (3, H, W) map flattened, 3HW values (pixel maps are unchanged).", ""]
    for ds in datasets:
        recs = read_results(out / ds / "results.jsonl")
        vals: dict = {}
        for rec in recs.values():
            maps = load_maps(out / ds / "maps" / f"{rec['slug']}.npz", rec["methods"])
            for name, a in maps.items():
                a = np.asarray(a, dtype=np.float64)
                flat = a.reshape(1, -1)
                v = vals.setdefault(name, {"sum": [], "abs_sum": [], "channels": []})
                v["sum"].append(gini(a))
                v["abs_sum"].append(gini(a, channels="abs_sum"))
                v["channels"].append(gini(flat))
        if not vals:
            continue
        lines += [f"### {ds} ({len(recs)} images)", "", "| method | sum | abs_sum | channels |",
                  "|---|---|---|---|"]
        for name, v in vals.items():
            cells = [f"{np.mean(v[k]):.4f} +- {np.std(v[k]):.4f}" for k in ("sum", "abs_sum", "channels")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def small_fraction_morf(out: Path, ds: str, percentages, clf, seed: int = 0) -> tuple:
    """MoRF ROAD at small removal fractions, recomputed from the stored maps of ``ds``.

    At the reference percentages (10%..90%) a map whose support is ~0.2% of the pixels is
    ranked by the random tie-breaker for almost every removed pixel, so its curve is the
    random curve by construction; this looks where the maps differ.
    """
    from hsets_widgets.metrics.road import road
    from hsets_widgets.runs.datasets import ImageItem, load_item
    from hsets_widgets.runs.store import load_maps, read_results

    curves: dict = {}
    for rec in read_results(out / ds / "results.jsonl").values():
        x = load_item(ImageItem(Path(rec["path"])), clf.input_size)
        maps = load_maps(out / ds / "maps" / f"{rec['slug']}.npz", rec["methods"])
        for name, a in maps.items():
            r = road(x, clf, a, percentages, orders=("morf",), seed=seed)
            curves.setdefault(name, []).append((r.morf.accuracy, r.morf.probability))
    if not curves:
        return "", None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pct = 100 * np.asarray(sorted(percentages))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    lines = [f"## MoRF at small fractions removed ({ds}, recomputed from the stored maps)", "",
             "| method | " + " | ".join(f"prob@{p:g}%" for p in pct) + " |",
             "|" + "---|" * (len(pct) + 1)]
    for name, cs in curves.items():
        acc = np.mean([c[0] for c in cs], 0)
        prob = np.mean([c[1] for c in cs], 0)
        axes[0].plot(pct, acc, marker="o", ms=3, label=name)
        axes[1].plot(pct, prob, marker="o", ms=3, label=name)
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in prob) + " |")
    for ax, lab in zip(axes, ("accuracy (argmax = original prediction)", "probability of the original class")):
        ax.set_xscale("log")
        ax.set_xlabel("% most relevant pixels removed (log scale)")
        ax.set_ylabel(lab)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"ROAD MoRF at small fractions, {ds} (n={len(next(iter(curves.values())))})")
    fig.tight_layout()
    path = out / f"morf_small_{ds}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return "\n".join(lines) + "\n", path


def plot_figure1(out: Path, all_metrics: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_metrics), figsize=(5.5 * len(all_metrics), 4), squeeze=False)
    for ax, (ds, m) in zip(axes[0], all_metrics.items()):
        for name, e in m["methods"].items():
            c = e.get("curves", {}).get("morf")
            if not c:
                continue
            x = 100 * np.asarray(c["percentages"])
            y = np.asarray(c["accuracy_mean"])
            se = np.asarray(c["accuracy_std"]) / math.sqrt(max(c["n"], 1))
            style = "-" if name.startswith(("hsets", "ig")) else "--"
            ax.plot(x, y, style, marker="o", ms=3, label=f"{name}")
            ax.fill_between(x, y - se, y + se, alpha=0.12)
        ax.set_title(f"ROAD MoRF, {ds} (n={m['n_images']}, {m['model']})", fontsize=10)
        ax.set_xlabel("% most relevant pixels removed (noisy linear imputation)")
        ax.set_ylabel("accuracy (argmax = original prediction)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "figure1_morf.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch

    from hsets_widgets.model.models import load_classifier
    from hsets_widgets.plumbing.progress import TqdmProgress
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/reproduce_paper.py " + " ".join(argv if argv is not None else sys.argv[1:])
    clf = load_classifier(args.model)
    methods = [m.strip().replace("+", ",") for m in args.methods.split(",") if m.strip()]
    pct = args.percentages if args.percentages in ("road", "quantus") else \
        [float(v) for v in args.percentages.split(",")]
    orders = [o.strip() for o in args.orders.split(",") if o.strip()]
    all_metrics = {}
    for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if ds not in DATASETS:
            raise SystemExit(f"unknown dataset {ds!r}; use {', '.join(DATASETS)}")
        if not DATASETS[ds].is_dir():
            raise SystemExit(f"{DATASETS[ds]} not found: run from a checkout with ../shared beside it")
        items = collect_images([DATASETS[ds]], clf.class_names)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = run_evaluation(items, clf, out / ds, methods=methods, percentages=pct, orders=orders,
                               limit=args.limit, seed=args.seed, progress=TqdmProgress())
        m["wall_seconds_this_call"] = time.perf_counter() - t0
        all_metrics[ds] = m
        print(f"{ds}: {m['n_images']} images ({m['n_computed']} new) in "
              f"{m['wall_seconds_this_call']:.0f} s", file=sys.stderr)
    # tables and figure cover every dataset folder under OUT, also those of earlier calls
    for ds in DATASETS:
        f = out / ds / "metrics.json"
        if ds not in all_metrics and f.exists():
            all_metrics[ds] = json.loads(f.read_text())
    all_metrics = {ds: all_metrics[ds] for ds in DATASETS if ds in all_metrics}
    with open(out / "commands.txt", "a") as fh:
        fh.write(command + "\n")
    table = write_table(out, all_metrics, command)
    with open(table, "a") as fh:
        fh.write("\n" + reduction_table(out, list(all_metrics)) + "\n")
        if args.small_percentages:
            small = [float(v) for v in args.small_percentages.split(",")]
            for ds in all_metrics:
                text, _ = small_fraction_morf(out, ds, small, clf, args.seed)
                fh.write("\n" + text)
    print(table.read_text())
    plot_figure1(out, all_metrics)
    (out / "summary.json").write_text(json.dumps(
        {ds: {"n_images": m["n_images"], "methods": {k: {kk: e.get(kk) for kk in TABLE_METRICS}
                                                     for k, e in m["methods"].items()}}
         for ds, m in all_metrics.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
