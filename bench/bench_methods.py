"""H-Sets beside the interaction methods it is compared with (Archipelago, MoXI, Integrated
Hessians, CASO, CAFO) and IG: do they find planted interactions, how faithful are their maps on
photos, do their sets act together, and what do they cost.

planted
    The planted scene of ``hsets_widgets.planted`` (a pair and a triple of distant patches whose
    score is a product, a patch interacting with itself, a patch with a main effect only) on its
    quickshift superpixels: per method, the map's AUC for the interacting pixels against the
    background and against the main-effect patch, and for each planted group the best Jaccard
    overlap of one of the method's sets with it. Seconds, no photos. -> bench/methods/planted.json
photos
    Photos of ``../shared/images`` (``--half``, correctly classified only, ``--limit N``), every
    method's map scored as ``hsets evaluate`` scores it (MoRF/LeRF AOPC, sparsity), the sets of the
    set-making methods put through the interaction test against their controls, seconds and
    forward passes per image. Resumable. -> bench/methods/photos-<half>.jsonl
report
    bench/METHODS.md and bench/METHODS.json: both parts, with paired differences to H-Sets.

Run ``python bench/bench_methods.py planted``, ``... photos --limit 4`` and ``... report``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
RUNS = HERE / "methods"
REPORT_MD = HERE / "METHODS.md"
REPORT_JSON = HERE / "METHODS.json"

#: the methods side by side, as ``hsets evaluate`` names them (cost settings: the engine defaults)
METHODS = ("hsets", "hsets:row_floor=0.3,within_mask=False", "ig", "archipelago", "moxi", "ih", "caso", "cafo",
           "random")
#: on photos: the floor variant costs minutes of Hessian rows a photo and is measured in
#: bench/INTERACTIONS.md already
PHOTO_METHODS = tuple(m for m in METHODS if "row_floor" not in m)


def _auc(scores, positive, negative) -> float:
    pos, neg = np.sort(scores[positive]), scores[negative]
    # Mann-Whitney by ranks: the chance a positive pixel outranks a negative one (ties half)
    lower = np.searchsorted(pos, neg, side="left")
    upper = np.searchsorted(pos, neg, side="right")
    return float(((len(pos) - upper).sum() + 0.5 * (upper - lower).sum()) / (len(pos) * len(neg)))


def planted_part(args) -> dict:
    import torch

    from hsets_widgets.evaluation.baselines import METHODS as KINDS
    from hsets_widgets.evaluation.baselines import Method, attribute_sets, parse_method_spec
    from hsets_widgets.moxi import grid_labels
    from hsets_widgets.planted import planted_classifier, scene

    sc = scene(64)
    clf = planted_classifier(sc["terms"], 64)
    x = torch.as_tensor(sc["image"].transpose(2, 0, 1), dtype=torch.float64)
    # an 8 x 8 grid of cells: quickshift finds 9 superpixels on this synthetic image, SLIC one
    labels = grid_labels((64, 64), 8)
    mask = {role: np.zeros(64 * 64, bool) for role in ("pair", "triple", "inner", "main")}
    for role in mask:
        for q in sc[role]:
            mask[role][q.pixels(64)] = True
    interacting = mask["pair"] | mask["triple"] | mask["inner"]
    background = ~(interacting | mask["main"])
    out = {"n_superpixels": int(len(np.unique(labels))), "labels": "8 x 8 grid of 8-pixel cells", "methods": {}}
    for spec in METHODS:
        if spec == "random":
            continue
        name, options = parse_method_spec(spec)
        if name in ("hsets", "archipelago", "ih"):
            options["segmenter"] = labels
        if name == "moxi":
            options["grid"] = 8
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = attribute_sets(x, clf, Method(spec, KINDS[name].fn, options), target=0)
        pm = np.abs(made.map).reshape(len(made.map), -1).sum(0) if made.map.ndim == 3 else np.abs(made.map).ravel()
        rec = {"seconds": time.perf_counter() - t0, "auc_vs_background": _auc(pm, interacting, background),
               "auc_vs_main": _auc(pm, interacting, mask["main"]), "n_sets": len(made.sets)}
        for role in ("pair", "triple"):
            want = set(np.flatnonzero(mask[role]).tolist())
            best = max(made.sets, default=None, key=lambda s, w=want: len(w & set(s.pixels.tolist()))
                       / len(w | set(s.pixels.tolist())))
            got = set() if best is None else set(best.pixels.tolist())
            rec[f"{role}_jaccard"] = None if best is None else len(want & got) / len(want | got)
            rec[f"{role}_recall"] = None if best is None else len(want & got) / len(want)
        out["methods"][spec] = rec
        if not args.quiet:
            print(spec, json.dumps(rec), flush=True)
    return out


def photo_record(clf, name, path, args) -> dict:
    from hsets_widgets.evaluation.baselines import attribute_sets
    from hsets_widgets.evaluation.datasets import label_from_path
    from hsets_widgets.evaluation.insertion import insertion_deletion
    from hsets_widgets.evaluation.interactions import interaction_metrics, set_tests
    from hsets_widgets.evaluation.road import classify_batches
    from hsets_widgets.evaluation.sweep import map_scores
    from hsets_widgets.explain import Explainer

    x = Explainer(str(path), clf, "default", "slic", None, "cpu").x.detach()
    probs = classify_batches(x.unsqueeze(0), clf, 1)[0]
    target, label = int(probs.argmax()), label_from_path(path)
    rec = {"name": name, "target": target, "correct": label is not None and target == label, "methods": {}}
    if not rec["correct"]:
        return rec
    for spec in args.methods:
        counted = [0]
        hook = clf.module.register_forward_pre_hook(
            lambda mod, inp, c=counted: c.__setitem__(0, c[0] + len(inp[0])))
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made = attribute_sets(x, clf, spec, target=target, seed=0)
        finally:
            hook.remove()
        seconds, n_forward = time.perf_counter() - t0, counted[0]
        one = {"seconds": seconds, "forward_images": n_forward,
               **map_scores(x, clf, made.map, "fine", seed=0, original_probabilities=probs)}
        curves = insertion_deletion(x, clf, made.map, "fine", seed=0, original_probabilities=probs)
        one.update({f"{kind}_auc": c.auc("probability") for kind, c in curves.curves.items()})
        if made.sets:
            t0 = time.perf_counter()
            tests = set_tests(x, clf, target, made.sets, made.labels, made.attribution, seed=0)
            one.update(interaction_metrics(tests), interaction_seconds=time.perf_counter() - t0,
                       set_sizes=[int(len(s.pixels)) for s in made.sets])
        rec["methods"][spec] = one
        if not args.quiet:
            print(name, spec, f"{seconds:.0f}s", f"MoRF {one['morf_aopc']:.3f}",
                  f"share {one.get('interaction_share')}", flush=True)
    return rec


def photos_part(args) -> Path:
    from faithfulness import run_photos

    halves = ("tuning", "check") if args.half == "both" else (args.half,)
    run_photos(lambda clf, name, path: photo_record(clf, name, path, args), lambda h: RUNS / f"photos-{h}.jsonl",
               halves, args.limit, args.reverse, args.threads)
    return RUNS


def summarize(records: list) -> dict:
    from hsets_widgets.evaluation.statistics import paired_difference

    ok = [r for r in records if r.get("correct")]
    out = {"n_photos": len(ok), "methods": {}}
    for spec in METHODS:
        rows = [r for r in ok if spec in r["methods"]]
        if not rows:
            continue
        get = lambda key, rs=rows, sp=spec: [r["methods"][sp].get(key) for r in rs]  # noqa: E731
        m = {"n_photos": len(rows)}
        for key in ("morf_aopc", "lerf_aopc", "sparsity", "seconds", "forward_images", "interaction_share",
                    "interaction_controls", "interaction_difference", "interaction_above_controls"):
            vals = [v for v in get(key) if v is not None]
            m[key] = float(np.mean(vals)) if vals else None
        both = [r for r in rows if "hsets" in r["methods"]]
        if spec != "hsets" and both:
            d = paired_difference([r["methods"][spec]["morf_aopc"] for r in both],
                                  [r["methods"]["hsets"]["morf_aopc"] for r in both])
            m["morf_minus_hsets"] = {"difference": d.mean, "low": d.low, "high": d.high, "n": d.n}
        diffs = [v for v in get("interaction_difference") if v is not None]
        if len(diffs) > 1:
            d = paired_difference(diffs, [0.0] * len(diffs))
            m["interaction_interval"] = {"low": d.low, "high": d.high, "n": d.n}
        out["methods"][spec] = m
    return out


def report(args) -> None:
    from hsets_widgets.files import write_json, write_text

    planted_path = RUNS / "planted.json"
    planted = json.loads(planted_path.read_text()) if planted_path.exists() else {}
    halves = {h: summarize([json.loads(line) for line in (RUNS / f"photos-{h}.jsonl").read_text().splitlines()])
              for h in ("tuning", "check") if (RUNS / f"photos-{h}.jsonl").exists()}
    write_json(REPORT_JSON, {"planted": planted, "photos": halves})

    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    lines = ["# H-Sets beside the interaction methods (bench/bench_methods.py)", "",
             "Made by `python bench/bench_methods.py report` from bench/methods/. Every method at the "
             "engine's default settings (the cost settings keep one 224 px photo near a minute on a "
             "2-core CPU; see each module's docstring for the full-cost setting).", ""]
    if planted:
        lines += [f"## Planted scene (64 x 64 toy classifier; features: {planted['labels']})",
                  "", "| method | map AUC: interacting vs background | vs the main-effect patch | sets | "
                  "best Jaccard with the pair (its recall) | with the triple (recall) | seconds |", "|---|---|---|---|---|---|---|"]
        for spec, r in planted["methods"].items():
            lines.append(f"| {spec} | {r['auc_vs_background']:.2f} | {r['auc_vs_main']:.2f} | {r['n_sets']} | "
                         f"{f(r['pair_jaccard'], '{:.2f}')} ({f(r['pair_recall'], '{:.2f}')}) | "
                         f"{f(r['triple_jaccard'], '{:.2f}')} ({f(r['triple_recall'], '{:.2f}')}) | "
                         f"{r['seconds']:.1f} |")
    for half, s in halves.items():
        lines += ["", f"## Photos, {half} half ({s['n_photos']} correctly classified, EfficientNet-Lite0)", "",
                  "| method | MoRF AOPC | MoRF - H-Sets [95% CI] | LeRF AOPC | sparsity | interaction share "
                  "| controls | set - controls | sets above all controls | s / image | forward images |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for spec, m in s["methods"].items():
            d = m.get("morf_minus_hsets")
            dcell = f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"
            lines.append(f"| {spec} | {f(m['morf_aopc'])} | {dcell} | {f(m['lerf_aopc'])} | {f(m['sparsity'])} | "
                         f"{f(m['interaction_share'])} | {f(m['interaction_controls'])} | "
                         f"{f(m['interaction_difference'], '{:+.3f}')} | "
                         f"{f(m['interaction_above_controls'], '{:.2f}')} | {f(m['seconds'], '{:.0f}')} | "
                         f"{f(m['forward_images'], '{:.0f}')} |")
    write_text(REPORT_MD, "\n".join(lines) + "\n")
    print(f"wrote {REPORT_MD}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("planted", "photos", "report"))
    ap.add_argument("--half", choices=("tuning", "check", "both"), default="tuning")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos of each half")
    ap.add_argument("--reverse", action="store_true", help="run the photos from the last one")
    ap.add_argument("--methods", nargs="+", default=list(PHOTO_METHODS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.part == "planted":
        from hsets_widgets.files import write_json

        RUNS.mkdir(exist_ok=True)
        write_json(RUNS / "planted.json", planted_part(args))
    elif args.part == "photos":
        print(f"wrote {photos_part(args)}")
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
