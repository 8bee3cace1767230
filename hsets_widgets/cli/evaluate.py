"""``hsets evaluate``: sparsity, ROAD / AOPC and insertion / deletion of H-Sets and baselines
over many images.

Examples
--------
::

    hsets evaluate photos/ --out eval --limit 20
    hsets evaluate val/ --methods hsets:paper,ig,random --percentages quantus
    hsets evaluate --imagenette ~/data --methods ig,gradient,random
    hsets evaluate photos/ --methods hsets,ig,archipelago,moxi,ih,caso,cafo,random --interactions

    hsets evaluate val/ --workers 2                       # a local Ray cluster, 2 workers
    hsets evaluate val/ --address auto --gpus-per-worker 1  # an existing cluster's GPUs

Rerunning with the same ``--out`` resumes: images already in ``results.jsonl`` are skipped.
"""
from __future__ import annotations

import argparse
import sys

from ..plumbing.common import quiet_auto_segmenter
from ..plumbing.options import number


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hsets evaluate`` on ``subparsers``."""
    p = subparsers.add_parser(
        "evaluate", help="sparsity, ROAD / AOPC and insertion / deletion of H-Sets and baselines",
        description="Explain every image with every method, then score the maps: sparsity (Gini "
                    "index as Quantus computes it, plain and at matched support), ROAD (noisy "
                    "linear imputation, MoRF and LeRF, no retraining) with its AOPC (mean drop of "
                    "the class probability; higher MoRF and lower LeRF are more faithful), and "
                    "insertion / deletion areas (RISE). Writes results.jsonl, a CSV per image, "
                    "metrics.json and plots; rerunning with the same --out resumes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Methods: hsets (default preset), hsets:<preset> (default, interactions, paper, authors-code), ig, "
               "gradient, smoothgrad, random; options as name:key=value,key=value "
               "(e.g. 'hsets:paper,nu=500' or 'ig:n_steps=64').\n"
               "Percentages: 'fine' (.01 .02 .05 and the reference grid, the default), 'road' "
               "(.1 .2 .3 .4 .5 .7 .9, the reference), 'quantus' (1..99 step 2) or numbers; numbers "
               "are fractions unless one of them exceeds 1, then all are percent.")
    add_input_options(p)
    add_scoring_options(p)
    add_ray_options(p)
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """The images, the methods and the output folder of ``hsets evaluate``."""
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files or folders (scanned recursively; labels from wnid file names "
                             "like n01440764_tench.JPEG or from ImageFolder class folders)")
    parser.add_argument("--imagenette", metavar="ROOT",
                        help="use torchvision's Imagenette validation split, downloaded into ROOT if "
                             "missing (needs the internet once)")
    parser.add_argument("--imagenette-size", default="320px", choices=("full", "320px", "160px"),
                        help="Imagenette archive to use (default: 320px, ~330 MB)")
    from ..methods.registry import METHODS

    parser.add_argument("--methods", default="hsets,ig,gradient,smoothgrad,random",
                        help=f"comma-separated methods, of {', '.join(METHODS)} (default: %(default)s); "
                             "separate options of one method with '+' when the list itself uses commas, e.g. "
                             "hsets:paper+nu=500,archipelago:segmenter=slic")
    parser.add_argument("--out", default="hsets-evaluation", metavar="DIR",
                        help="output folder; reuse it to resume (default: %(default)s)")


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """How the maps are made and scored: percentages, orders, curves, model, seed, noise..."""
    from ..metrics.interactions import N_MOVED

    parser.add_argument("--percentages", nargs="+", default=["fine"], metavar="P",
                        help="'fine', 'road', 'quantus' or a list of fractions removed (default: fine)")
    parser.add_argument("--orders", default="morf,lerf", help="morf, lerf or both (default: %(default)s)")
    parser.add_argument("--curves", default="insertion,deletion",
                        help="insertion, deletion, both or none (default: %(default)s)")
    parser.add_argument("--limit", type=number("limit"), metavar="N", help="evaluate only the first N images")
    parser.add_argument("--correct-only", action="store_true",
                        help="skip images the model misclassifies or that have no label (the paper's "
                             "protocol); they are listed as skipped")
    parser.add_argument("--interactions", action="store_true",
                        help="also test whether each H-Sets set's pixels act together, against regions "
                             "of the same size chosen without the Hessian (about 5 s per set)")
    parser.add_argument("--moved-controls", type=number("moved_controls"), default=N_MOVED, metavar="N",
                        help="with --interactions: moved copies of each set among its controls (default "
                             f"%(default)s: p-values of at least 1/{N_MOVED + 3}; 19 lets p reach 1/22 < 0.05, "
                             f"at {22 / (N_MOVED + 3):.1f}x the passes)")
    parser.add_argument("--model", default=None,
                        help="classifier: the offline default efficientnet_lite0, or a torchvision name")
    parser.add_argument("--checkpoint", default=None, help="local state_dict for --model")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--seed", type=number("seed"), default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--noise", type=number("noise"), default=0.01,
                        help="ROAD imputation noise, image in [0, 1] units (default: 0.01)")
    parser.add_argument("--batch-size", type=number("batch_size"), default=16, help="imputed images per forward pass")
    parser.add_argument("--match-support", default="min",
                        help="support s for sparsity at matched support: 'min' (smallest support among "
                             "the methods on each image) or a fraction of the pixels (default: min)")


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """The options of a run on Ray workers (:class:`~hsets_widgets.runs.cluster.ClusterOptions`)."""
    ray = parser.add_argument_group("on a Ray cluster (pip install 'hsets-widgets[ray]')")
    ray.add_argument("--workers", type=number("workers"), metavar="N",
                     help="evaluate with N Ray workers; without --address a local cluster is "
                          "started for the run")
    ray.add_argument("--address", metavar="auto|HOST:PORT",
                     help="join a running Ray cluster (ray start --head, KubeRay) instead of "
                          "starting one; workers default to what it can hold")
    ray.add_argument("--gpus-per-worker", type=number("gpus_per_worker"), default=0.0, metavar="G",
                     help="GPUs each worker reserves; they then run on cuda (default: 0)")
    ray.add_argument("--threads-per-worker", type=number("threads_per_worker"), default=1, metavar="T",
                     help="torch threads (and Ray CPUs) per worker (default: 1)")
    ray.add_argument("--max-attempts", type=number("max_attempts"), default=3, metavar="K",
                     help="workers that may die on one image before it is recorded as failed "
                          "(default: 3)")


def parse_percentages(values) -> object:
    """CLI ``--percentages`` values -> a set name or a list of fractions (checked)."""
    if len(values) == 1 and values[0] in ("fine", "road", "quantus"):
        return values[0]
    try:
        nums = [number("percentage")(v) for v in values]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--percentages takes 'fine', 'road', 'quantus' or numbers: {err}") from err
    if any(v > 1 for v in nums):
        nums = [v / 100.0 for v in nums]
    return nums


def parse_match_support(text: str):
    """CLI ``--match-support``: ``min`` or a fraction of the pixels in (0, 1]."""
    if text.strip().lower() == "min":
        return "min"
    try:
        return number("match_support")(text)
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--match-support takes 'min' or a fraction of the pixels: {err}") from err


def parse_methods(text: str) -> list:
    """``"hsets:paper+nu=500,ig"`` -> ``["hsets:paper,nu=500", "ig"]``."""
    return [m.strip().replace("+", ",") for m in text.split(",") if m.strip()]


def run(args) -> int:
    """Evaluate the methods on the images and write the results folder."""
    from hsets_widgets.model.models import load_classifier, usable_device
    from hsets_widgets.plumbing.files import check_output_dir
    from hsets_widgets.plumbing.progress import TqdmProgress
    from hsets_widgets.runs.report import format_table
    from hsets_widgets.runs.runner import run_evaluation, run_settings

    if not args.paths and not args.imagenette:
        raise ValueError("give image files or folders, or --imagenette ROOT")
    device = str(usable_device(args.device))
    settings = scoring_settings(args)
    run_settings(**settings, methods_option="--methods")   # every setting, before the model loads
    options = cluster_options(args)        # so are the cluster's
    check_output_dir(args.out, create=False)
    clf = load_classifier(args.model, checkpoint=args.checkpoint, device=device)
    items = find_items(args, clf)
    with quiet_auto_segmenter():
        with TqdmProgress(disable=args.quiet) as bars:
            if options is not None:
                metrics = run_cluster(args, items, clf, settings, options, bars)
            else:
                metrics = run_evaluation(items, clf, args.out, **settings, limit=args.limit, progress=bars,
                                         checkpoint=args.checkpoint)
    if metrics["n_images"] == 0 and metrics["n_skipped"] and not metrics.get("n_failed") and \
            not any(s["reason"].startswith("misclassified") for s in metrics["skipped"]):
        first = metrics["skipped"][0]
        raise ValueError(f"no image could be evaluated: {metrics['n_skipped']} skipped (first: {first['path']}: "
                         f"{first['reason']})")
    print(format_table(metrics))
    if args.interactions:
        print(format_table(metrics, ("interaction_share", "interaction_controls", "interaction_difference",
                                     "interaction_above_controls", "interaction_p", "interaction_significant")))
    print_counts(metrics, args.out)
    return 0


def scoring_settings(args) -> dict:
    """The keyword arguments of :func:`~hsets_widgets.runs.runner.run_settings` from the CLI."""
    curves = [] if args.curves.strip().lower() == "none" else \
        [c.strip().lower() for c in args.curves.split(",") if c.strip()]
    return dict(methods=parse_methods(args.methods), percentages=parse_percentages(args.percentages),
                orders=[o.strip().lower() for o in args.orders.split(",") if o.strip()],
                seed=args.seed, noise=args.noise, batch_size=args.batch_size,
                match_support=parse_match_support(args.match_support),
                curves=curves, correct_only=args.correct_only, interactions=args.interactions,
                moved_controls=args.moved_controls)


def cluster_options(args):
    """The checked :class:`~hsets_widgets.runs.cluster.ClusterOptions` of ``--workers`` /
    ``--address`` (and Ray importable), or None for a run in this process.
    """
    if args.workers is None and args.address is None:
        if args.gpus_per_worker:
            raise ValueError("--gpus-per-worker needs --workers or --address (Ray workers)")
        return None
    from hsets_widgets.runs.cluster import ClusterOptions, require_ray

    options = ClusterOptions(workers=args.workers, address=args.address,
                             threads_per_worker=args.threads_per_worker, gpus_per_worker=args.gpus_per_worker,
                             max_attempts=args.max_attempts, quiet=args.quiet)
    require_ray(args.address)    # the error says what to install
    return options


def find_items(args, clf) -> list:
    """The images named on the command line (and Imagenette's, with ``--imagenette``)."""
    from hsets_widgets.runs.datasets import collect_images, imagenette_items

    items = []
    if args.paths:
        items += collect_images(args.paths, clf.class_names)
    if args.imagenette:
        items += imagenette_items(args.imagenette, size=args.imagenette_size)
    if not items:
        raise ValueError(f"no image files found in {', '.join(args.paths)}")
    return items


def print_counts(metrics: dict, out) -> None:
    """What was evaluated, resumed, skipped and failed, on stderr."""
    print(f"{metrics['n_images']} images evaluated ({metrics['n_computed']} computed now, "
          f"{metrics['n_resumed']} resumed), {metrics['n_skipped']} skipped; results in {out}",
          file=sys.stderr)
    for s in metrics["skipped"]:
        print(f"  skipped {s['path']}: {s['reason']}", file=sys.stderr)
    for f in metrics.get("failed", []):
        print(f"  failed {f['path']} after {f['attempts']} attempts: {f['reason']}", file=sys.stderr)


def run_cluster(args, items, clf, settings: dict, options, bars) -> dict:
    """The same evaluation on Ray workers, each loading the model itself (``clf`` is the
    driver's copy).
    """
    import functools

    from hsets_widgets.model.models import load_classifier
    from hsets_widgets.runs.cluster import run_on_ray
    from hsets_widgets.runs.runner import run_settings

    failed = []

    def on_event(event) -> None:
        if event.kind == "failed":
            failed.append(event.image)
        bars.postfix("evaluate", failed=len(failed))
        bars.write(event.line())

    load = functools.partial(load_classifier, args.model, checkpoint=args.checkpoint)
    return run_on_ray(items, load, args.out, run_settings(**settings), options, progress=bars,
                      limit=args.limit, on_event=on_event, classifier=clf, checkpoint=args.checkpoint)
