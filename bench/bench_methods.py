"""H-Sets beside the interaction methods it is compared with (Archipelago, MoXI, Integrated
Hessians, CASO, CAFO) and IG: do they find planted interactions, how faithful are their maps on
photos, do their sets act together, and what do they cost.

planted
    The planted scene of ``hsets_widgets.model.planted`` (a pair and a triple of distant patches whose
    score is a product, a patch interacting with itself, a patch with a main effect only) on its
    quickshift superpixels: per method, the map's AUC for the interacting pixels against the
    background and against the main-effect patch, and for each planted group the best Jaccard
    overlap of one of the method's sets with it. Seconds, no photos. -> bench/methods/planted.json
photos
    Photos of ``../shared/images`` (``--half``, correctly classified only, ``--limit N``), every
    method's map scored as ``hsets evaluate`` scores it (MoRF/LeRF AOPC, sparsity), the sets of the
    set-making methods put through the interaction test against their controls, seconds and
    forward passes per image. Resumable. -> bench/methods/photos-<half>.jsonl
speed
    Every method once on the bundled photo (``--threads``, default 2), run alone on a quiet
    machine: seconds and forward images per photo. -> bench/RESULTS.md
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
FAITHFULNESS_MD = HERE / "FAITHFULNESS.md"

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

    from hsets_widgets.methods.moxi import grid_labels
    from hsets_widgets.methods.protocol import Method
    from hsets_widgets.methods.registry import METHODS as KINDS
    from hsets_widgets.methods.registry import attribute_sets, parse_method_spec
    from hsets_widgets.model.planted import planted_classifier, scene

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
            made = attribute_sets(x, clf, 0, method=Method(spec, KINDS[name].fn, options))
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
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.methods.registry import attribute_sets
    from hsets_widgets.metrics.insertion import insertion_deletion
    from hsets_widgets.metrics.interactions import interaction_metrics, set_tests
    from hsets_widgets.metrics.road import classify_batches
    from hsets_widgets.runs.datasets import label_from_path
    from hsets_widgets.runs.sweep import map_scores

    x = Explainer(str(path), clf, preset="default", segmenter="slic", device="cpu").x.detach()
    probs = classify_batches(x.unsqueeze(0), clf, 1)[0]
    target, label = int(probs.argmax()), label_from_path(path)
    rec = {"name": name, "target": target, "correct": label is not None and target == label, "methods": {}}
    if not rec["correct"]:
        return rec
    for spec in args.methods:
        made, seconds, n_forward = counted(clf, lambda sp=spec: attribute_sets(x, clf, target, method=sp, seed=0))
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


#: the per-photo numbers summarised per method (means), and those paired against H-Sets
KEYS = ("morf_aopc", "lerf_aopc", "insertion_auc", "deletion_auc", "sparsity", "support_fraction", "seconds",
        "forward_images", "interaction_share", "interaction_controls", "interaction_difference",
        "interaction_above_controls")
PAIRED = ("morf_aopc", "lerf_aopc", "insertion_auc", "deletion_auc", "sparsity")
#: the later paper's ROAD AOPC (ImageNet, from a secondary summary; METHOD-FACTS section 9):
#: model -> {method: value}; CASO, CAFO and Integrated Hessians have no number there
PAPER = {"MobileNetV3": {"ig": 0.06, "archipelago": 0.24, "moxi": 0.33, "hsets": 0.37},
         "VGG16": {"ig": 0.13, "archipelago": 0.27, "moxi": 0.32, "hsets": 0.34},
         "DenseNet121": {"ig": 0.30, "archipelago": 0.32, "moxi": 0.35, "hsets": 0.38}}
#: the orderings the paper's table claims (higher ROAD AOPC first), and its sparsity claim
ORDERINGS = (("hsets", "moxi"), ("hsets", "archipelago"), ("hsets", "ig"), ("moxi", "archipelago"),
             ("archipelago", "ig"))
#: below this many photos a bootstrap interval is no interval (two photos give their min and max):
#: differences are shown with how many photos went each way, and no ordering gets a verdict
MIN_PHOTOS = 5
NAMES = {"hsets": "H-Sets", "ig": "IG", "archipelago": "Archipelago", "moxi": "MoXI", "ih": "Integrated Hessians",
         "caso": "CASO", "cafo": "CAFO", "random": "random"}


def counted(clf, fn):
    """``fn()`` with the images the model saw counted: (result, seconds, forward images)."""
    from hsets_widgets.model.forward import counting

    seen = [0]
    hook = clf.module.register_forward_pre_hook(lambda mod, inp: seen.__setitem__(0, seen[0] + len(inp[0])))
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), counting() as onnx:
            warnings.simplefilter("ignore")
            out = fn()
    finally:
        hook.remove()
    return out, time.perf_counter() - t0, seen[0] + onnx[0]


def speed_part(args) -> str:
    """Each of ``args.methods`` once on the bundled photo, alone: RESULTS.md's cost table."""
    import os

    import torch
    from _results import git_rev, machine, write_section

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.methods.registry import attribute_sets
    from hsets_widgets.model.models import load_classifier

    torch.set_num_threads(args.threads)
    clf = load_classifier(None)
    x = Explainer("chelsea", clf, preset="default", segmenter="slic", device="cpu").x.detach()
    attribute_sets(x, clf, method="ig:n_steps=4")                      # warm-up: first-call costs out of the table
    load = os.getloadavg()[0]
    lines = ["## Interaction methods: cost on one photo, alone (bench/bench_methods.py speed)", "",
             f"Machine: {machine()}; commit {git_rev()}; load average {load:.1f} when it started. The bundled "
             "photo (scikit-image's chelsea, 224 px), every method at its engine defaults, one after the other "
             "in one process; forward images counted by a hook on the model (the Hessian-vector products of "
             "H-Sets, Integrated Hessians and CASO, run through torch.func, are not counted).", "",
             "| method | seconds | forward images | forward images / s | sets |", "|---|---|---|---|---|"]
    for spec in args.methods:
        made, sec, fwd = counted(clf, lambda sp=spec: attribute_sets(x, clf, method=sp, seed=0))
        lines.append(f"| {spec} | {sec:.1f} | {fwd} | {fwd / max(sec, 1e-9):.1f} | {len(made.sets)} |")
        if not args.quiet:
            print(lines[-1], flush=True)
    lines.append(f"\nLoad average when it ended: {os.getloadavg()[0]:.1f}.")
    md = "\n".join(lines) + "\n"
    write_section("interaction-methods-alone", md)
    return md


def summarize(records: list) -> dict:
    from hsets_widgets.metrics.statistics import paired_difference

    ok = [r for r in records if r.get("correct")]
    out = {"n_photos": len(ok), "photos": [r["name"] for r in ok], "methods": {}}
    for spec in METHODS:
        rows = [r for r in ok if spec in r["methods"]]
        if not rows:
            continue
        m = {"n_photos": len(rows)}
        for key in KEYS:
            vals = [r["methods"][spec].get(key) for r in rows]
            vals = [v for v in vals if v is not None]
            m[key] = float(np.mean(vals)) if vals else None
        both = [r for r in rows if "hsets" in r["methods"]]
        if spec != "hsets" and len(both) > 1:
            for key in PAIRED:
                d = paired_difference([r["methods"][spec].get(key, np.nan) for r in both],
                                      [r["methods"]["hsets"].get(key, np.nan) for r in both])
                m[f"{key}_minus_hsets"] = {"difference": d.mean, "low": d.low, "high": d.high, "n": d.n,
                                           "wins": d.wins}
        diffs = [r["methods"][spec].get("interaction_difference") for r in rows]
        diffs = [v for v in diffs if v is not None]
        if len(diffs) >= MIN_PHOTOS:
            d = paired_difference(diffs, [0.0] * len(diffs))
            m["interaction_interval"] = {"low": d.low, "high": d.high, "n": d.n}
        out["methods"][spec] = m
    return out


def ordering(summary: dict, a: str, b: str, key: str = "morf_aopc") -> dict:
    """Does ``a`` beat ``b`` on ``key`` on these photos? The paired difference a - b with its
    interval, and a verdict: 'holds' (interval above 0), 'reversed' (below) or 'not shown'.
    """

    ms = summary["methods"]
    if a not in ms or b not in ms:
        return {"verdict": "not run"}
    if b == "hsets" or a == "hsets":
        other, sign = (b, -1) if a == "hsets" else (a, 1)
        d = ms[other].get(f"{key}_minus_hsets")
        if not d:
            return {"verdict": "fewer than 2 photos"}
        diff, low, high = (d["difference"], d["low"], d["high"]) if sign == 1 else \
            (-d["difference"], -d["high"], -d["low"])
        n = d["n"]
        wins = d["wins"] if sign == 1 else n - d["wins"]
    else:
        return summary.get("pairs", {}).get(f"{a}-{b}-{key}", {"verdict": "fewer than 2 photos"})
    return {"difference": diff, "low": low, "high": high, "n": n, "wins": wins, "verdict": verdict(low, high, n)}


def verdict(low: float, high: float, n: int) -> str:
    """'holds' (interval above 0), 'reversed' (below), 'not shown', or no verdict on too few photos."""
    if n < MIN_PHOTOS:
        return f"no verdict (n < {MIN_PHOTOS})"
    return "holds" if low > 0 else "reversed" if high < 0 else "not shown"


def difference_cell(d: dict, fmt: str = "{:+.3f}") -> str:
    """``+0.012 [-0.010, +0.034]``, or on fewer than :data:`MIN_PHOTOS` photos the difference
    and how many photos went each way (``+0.012, 2 of 3 photos above``)."""
    if d["n"] < MIN_PHOTOS:
        return f"{fmt.format(d['difference'])}, {d['wins']} of {d['n']} photos above"
    return f"{fmt.format(d['difference'])} [{fmt.format(d['low'])}, {fmt.format(d['high'])}]"


def add_pairs(summary: dict, records: list) -> None:
    """Paired differences between the non-H-Sets methods of :data:`ORDERINGS` (MoRF AOPC)."""
    from hsets_widgets.metrics.statistics import paired_difference

    ok = [r for r in records if r.get("correct")]
    pairs = {}
    for a, b in ORDERINGS:
        if "hsets" in (a, b):
            continue
        rows = [r for r in ok if a in r["methods"] and b in r["methods"]]
        if len(rows) < 2:
            continue
        d = paired_difference([r["methods"][a]["morf_aopc"] for r in rows], [r["methods"][b]["morf_aopc"] for r in rows])
        pairs[f"{a}-{b}-morf_aopc"] = {"difference": d.mean, "low": d.low, "high": d.high, "n": d.n,
                                       "wins": d.wins, "verdict": verdict(d.low, d.high, d.n)}
    summary["pairs"] = pairs


def paper_section(halves: dict) -> str:
    """The paper's table beside ours, and which of its orderings hold here (Markdown)."""
    def f(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    hs = [h for h in ("tuning", "check") if h in halves]
    lines = ["## The later paper's table beside ours", "",
             "The paper reports ROAD AOPC on ImageNet (1000 correctly classified images, its models); here "
             "MoRF AOPC (mean drop of the class probability over the removal fractions, noisy linear "
             "imputation, the 'fine' grid) on the shared photos, EfficientNet-Lite0 (the only classifier "
             "whose weights ship offline), correctly classified photos only, every method at its engine "
             "defaults. The paper's exact AOPC formula is not published, so compare orderings, not values.", "",
             "| method | paper MobileNetV3 | paper VGG16 | paper DenseNet121 | "
             + " | ".join(f"ours, {h} half (n = {halves[h]['n_photos']}) MoRF AOPC | sparsity" for h in hs) + " |",
             "|---|---|---|---|" + "---|---|" * len(hs)]
    for spec in ("hsets", "moxi", "archipelago", "ih", "caso", "cafo", "ig", "random"):
        cells = [f(PAPER[m].get(spec)) for m in PAPER]
        for h in hs:
            m = halves[h]["methods"].get(spec, {})
            cells += [f(m.get("morf_aopc"), "{:.3f}"), f(m.get("sparsity"), "{:.3f}")]
        lines.append(f"| {NAMES[spec]} | " + " | ".join(cells) + " |")
    lines += ["", "The paper's orderings (MoRF AOPC here; paired difference over the same photos, 95% bootstrap "
              f"interval; 'holds' when the interval is above 0, 'reversed' when below, else 'not shown'; on fewer "
              f"than {MIN_PHOTOS} photos no verdict, only how many photos went each way):", "",
              "| paper says | " + " | ".join(f"{h} half: difference [95% CI] | verdict" for h in hs) + " |",
              "|---|" + "---|---|" * len(hs)]
    for a, b in ORDERINGS:
        cells = []
        for h in hs:
            o = ordering(halves[h], a, b)
            cells += ["-" if "difference" not in o else f"{difference_cell(o)} (n = {o['n']})", o["verdict"]]
        lines.append(f"| {NAMES[a]} > {NAMES[b]} | " + " | ".join(cells) + " |")
    cells = []
    for h in hs:
        ms = halves[h]["methods"]
        others = [s for s in ("moxi", "archipelago", "ih", "caso", "cafo", "ig") if s in ms]
        ds = {o: ms[o].get("sparsity_minus_hsets") for o in others if ms[o].get("sparsity_minus_hsets")}
        if ds and min(d["n"] for d in ds.values()) < MIN_PHOTOS:   # no interval: on every photo?
            below = [NAMES[o] for o, d in ds.items() if d["wins"] == 0]
            cells += [f"sparser on every one of {min(d['n'] for d in ds.values())} photos than: "
                      f"{', '.join(below) or 'none'}", f"no verdict (n < {MIN_PHOTOS})"]
        else:
            worse = [NAMES[o] for o, d in ds.items() if d["high"] < 0]
            cells += [", ".join(worse) or "none", f"{len(worse)} of {len(others)}"]
    lines.append("| H-Sets sparser than each other method | " + " | ".join(cells) + " |")
    lines += ["", plain_words(halves, hs)]
    return "\n".join(lines) + "\n"


def plain_words(halves: dict, hs: list) -> str:
    """The orderings' verdicts said in one paragraph (what the table above says, in words)."""
    said, counts = [], {"both": 0, "reversed": 0, "open": 0}
    for a, b in ORDERINGS:
        v = {h: ordering(halves[h], a, b).get("verdict", "not run") for h in hs}
        if any(x.startswith("no verdict") or x in ("not run", "fewer than 2 photos") for x in v.values()):
            return (f"In plain words: fewer than {MIN_PHOTOS} photos on a half, so no ordering is decided yet; "
                    "the table gives how many photos went each way.")
        if all(x == "holds" for x in v.values()):
            counts["both"] += 1
            how = "holds on " + ("both halves" if len(hs) > 1 else f"the {hs[0]} half")
        elif any(x == "reversed" for x in v.values()):
            counts["reversed"] += 1
            how = "is reversed (" + " and ".join(f"{h} half" for h, x in v.items() if x == "reversed") + \
                  f": {NAMES[b]} scores higher)"
        else:
            counts["open"] += 1
            how = "is not shown (" + ", ".join(f"{h} half: {x}" for h, x in v.items()) + ")"
        said.append(f"{NAMES[a]} above {NAMES[b]} {how}")
    n = {h: halves[h]["n_photos"] for h in hs}
    return (f"In plain words ({', '.join(f'{k} photos on the {h} half' for h, k in n.items())}): of the paper's "
            f"{len(ORDERINGS)} MoRF orderings, {counts['both']} hold on every half, {counts['reversed']} are "
            f"reversed on at least one half and {counts['open']} are not shown either way. " + "; ".join(said) + ".")


def speed_section(halves: dict, load_note: str) -> str:
    """Seconds and forward images per photo of every method (both halves pooled) for RESULTS.md."""
    from _results import machine

    lines = ["## Interaction methods: cost per photo (bench/bench_methods.py)", "",
             f"Machine: {machine()}. Means over the correctly classified photos of both halves, every method "
             "at its engine defaults on a 224 px photo; forward images are counted by a hook on the model "
             "(every image of every batch; the Hessian-vector products of H-Sets, Integrated Hessians and "
             "CASO run through torch.func and are not counted), the set methods' interaction tests not "
             f"included. {load_note}", "",
             "| method | photos | s / photo | forward images / photo | forward images / s |", "|---|---|---|---|---|"]
    for spec in METHODS:
        rows = [halves[h]["methods"][spec] for h in halves if spec in halves[h]["methods"]]
        n = sum(r["n_photos"] for r in rows)
        if not n:
            continue
        sec = sum(r["seconds"] * r["n_photos"] for r in rows) / n
        fwd = sum(r["forward_images"] * r["n_photos"] for r in rows) / n
        lines.append(f"| {spec} | {n} | {sec:.0f} | {fwd:.0f} | {fwd / sec:.1f} |")
    return "\n".join(lines) + "\n"


def report(args) -> None:
    from _results import write_section
    from faithfulness import read_records

    from hsets_widgets.plumbing.files import write_json, write_text

    planted_path = RUNS / "planted.json"
    planted = json.loads(planted_path.read_text()) if planted_path.exists() else {}
    halves = {}
    for h in ("tuning", "check"):
        path = RUNS / f"photos-{h}.jsonl"
        if path.exists():
            # one record per photo: two processes that start the same photo at once both append it
            records = list(read_records([path]).values())
            halves[h] = summarize(records)
            add_pairs(halves[h], records)
    write_json(REPORT_JSON, {"planted": planted, "photos": halves})

    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    def d(m, key):
        v = m.get(f"{key}_minus_hsets")
        return "-" if not v else difference_cell(v)

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
                  f"Photos: {', '.join(s['photos'])}.", "",
                  "Faithfulness (MoRF AOPC and insertion AUC: higher is more faithful; LeRF AOPC and deletion "
                  "AUC: lower), each with its paired difference to H-Sets on the same photos [95% bootstrap CI]:", "",
                  "| method | MoRF AOPC | - H-Sets | LeRF AOPC | - H-Sets | insertion AUC | - H-Sets | "
                  "deletion AUC | - H-Sets | sparsity | - H-Sets | support |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for spec, m in s["methods"].items():
            lines.append(f"| {spec} | {f(m['morf_aopc'])} | {d(m, 'morf_aopc')} | {f(m['lerf_aopc'])} | "
                         f"{d(m, 'lerf_aopc')} | {f(m['insertion_auc'])} | {d(m, 'insertion_auc')} | "
                         f"{f(m['deletion_auc'])} | {d(m, 'deletion_auc')} | {f(m['sparsity'])} | "
                         f"{d(m, 'sparsity')} | {f(m['support_fraction'], '{:.1%}')} |")
        lines += ["", "Do the sets act together (interaction test of every set against its four controls, blur "
                  "removal, 6 parts; set - controls: mean over photos of the per-photo mean, 95% bootstrap CI), "
                  "and what it costs (seconds on this shared 2-core CPU; model calls: images through the "
                  "model's forward, counted by a hook, which the Hessian-vector products of H-Sets, "
                  "Integrated Hessians and CASO, run through torch.func, do not pass; for those the seconds "
                  "are the cost):", "",
                  "| method | interaction share | controls | set - controls [95% CI] | sets above all controls | "
                  "s / image | model calls (images) / image |", "|---|---|---|---|---|---|---|"]
        for spec, m in s["methods"].items():
            iv = m.get("interaction_interval")
            diff = "-" if m["interaction_difference"] is None else (
                f"{m['interaction_difference']:+.3f}" + (f" [{iv['low']:+.3f}, {iv['high']:+.3f}]" if iv else ""))
            lines.append(f"| {spec} | {f(m['interaction_share'])} | {f(m['interaction_controls'])} | {diff} | "
                         f"{f(m['interaction_above_controls'], '{:.2f}')} | {f(m['seconds'], '{:.0f}')} | "
                         f"{f(m['forward_images'], '{:.0f}')} |")
    if halves:
        write_section("interaction-methods-speed", speed_section(halves, args.load_note))
        section = paper_section(halves)
        lines += ["", section]
        write_section("interaction-methods", section, FAITHFULNESS_MD)  # kept by faithfulness.py report
    write_text(REPORT_MD, "\n".join(lines) + "\n")
    print(f"wrote {REPORT_MD}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("planted", "photos", "speed", "report"))
    ap.add_argument("--half", choices=("tuning", "check", "both"), default="tuning")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos of each half")
    ap.add_argument("--reverse", action="store_true", help="run the photos from the last one")
    ap.add_argument("--methods", nargs="+", default=list(PHOTO_METHODS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--load-note", default="", help="report: how loaded the machine was while the photos ran")
    args = ap.parse_args(argv)
    if args.part == "planted":
        from hsets_widgets.plumbing.files import write_json

        RUNS.mkdir(exist_ok=True)
        write_json(RUNS / "planted.json", planted_part(args))
    elif args.part == "photos":
        print(f"wrote {photos_part(args)}")
    elif args.part == "speed":
        speed_part(args)
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
