"""How complete Integrated Gradients is, per path rule and number of steps, and what it costs.

Completeness: ``sum(IG) = f(x) - f(b)`` for exact integration; the relative error
``|sum(IG) - (f(x) - f(b))| / |f(x) - f(b)|`` is measured on the bundled photo ``chelsea``
(what ``hsets demo`` explains) and on the tuning half of ``../shared/images``, with the
default model (EfficientNet-Lite0) and a black baseline. Each configuration runs on the same
photos in the same process; time is the median wall time of one IG. Writes the
``ig-completeness`` section of ``bench/RESULTS.md``.

    python bench/bench_ig.py              # ~15 min on 2 CPU cores
    python bench/bench_ig.py --limit 10
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIGS = (("midpoint", 32), ("midpoint", 64), ("midpoint", 128), ("gauss-legendre", 64),
           ("adaptive", 32), ("adaptive", 48), ("adaptive", 64))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="only the first N tuning photos")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch
    from _results import git_rev, machine, write_section
    from faithfulness import photos

    from hsets_widgets.hsets.explain import prepare_image
    from hsets_widgets.hsets.integrated_gradients import integrated_gradients
    from hsets_widgets.model.images import to_tensor
    from hsets_widgets.model.models import load_classifier

    torch.set_num_threads(args.threads)
    clf = load_classifier(None)
    tuning = [p for n, p, h in photos() if h == "tuning"][:args.limit]
    images = {"chelsea": to_tensor(prepare_image("chelsea", clf.input_size))}
    for p in tuning:
        images[p.name] = to_tensor(prepare_image(str(p), clf.input_size))
    errors = {c: {} for c in CONFIGS}
    times = {c: [] for c in CONFIGS}
    for name, x in images.items():
        for rule, steps in CONFIGS:
            t0 = time.perf_counter()
            r = integrated_gradients(x, clf, None, "zeros", steps, rule)
            times[(rule, steps)].append(time.perf_counter() - t0)
            errors[(rule, steps)][name] = r.relative_completeness_error
        print(name, {f"{r}-{s}": f"{errors[(r, s)][name]:.3f}" for r, s in CONFIGS}, flush=True)

    lines = [f"Written by `bench/bench_ig.py` (commit {git_rev()}) on {machine()}; "
             f"EfficientNet-Lite0, black baseline, chelsea and {len(tuning)} tuning photos.\n",
             "| rule | steps | chelsea | median | 90th percentile | max | photos within 5% | median time |",
             "|---|---|---|---|---|---|---|---|"]
    for rule, steps in CONFIGS:
        e = np.asarray([v for k, v in errors[(rule, steps)].items() if k != "chelsea"])
        lines.append(f"| {rule} | {steps} | {100 * errors[(rule, steps)]['chelsea']:.1f}% | "
                     f"{100 * np.median(e):.1f}% | {100 * np.percentile(e, 90):.1f}% | {100 * e.max():.1f}% | "
                     f"{int((e <= 0.05).sum())} / {e.size} | {np.median(times[(rule, steps)]):.1f} s |")
    lines.append("\nThe logit of a black image's path rises within the first few percent of the path, so "
                 "equally spaced nodes miss it; `adaptive` spends `4 x steps` forward passes (no "
                 "gradients) to find where the score changes and puts its nodes there.")
    path = write_section("ig-completeness", "## Integrated Gradients: completeness per path rule\n\n" +
                         "\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
