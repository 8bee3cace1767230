"""Speed of H-Sets against a naive reference, measured side by side in one run.

The naive reference does what the authors' code does: one Hessian row per
``autograd.grad`` call on a retained double-backward graph, sets grown one at a time, and
every sampled subset's IDG integrated afresh along the path (one gradient pass over the
``n_steps`` path points per subset). The fast path maps forward-over-reverse products
over a batch of one-hot tangents (``vmap``), caches rows, grows the sets side by side in
shared passes and scores subsets with the path-gradient identity. Outputs are compared so
a speed-up never changes a result (rows within float tolerance, identical sets, values
within tolerance).

    python bench/bench_hessian.py                      # this CPU, default model
    python bench/bench_hessian.py --models resnet50 vgg16 densenet121 efficientnet_lite0  # GPU

Each measurement runs in its own subprocess so peak memory is that configuration's alone.
Results go to bench/RESULTS.md (section "hessian-<device>"). torchvision models have random
weights here (no downloads): their times are real, their explanations are not meaningful.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).parent))
from _results import git_rev, machine, write_section  # noqa: E402

from hsets_widgets.hsets.curvature import CurvatureSpec, curvature  # noqa: E402
from hsets_widgets.hsets.explain import Explainer, prepare_image  # noqa: E402
from hsets_widgets.hsets.games import bernoulli_coalitions  # noqa: E402
from hsets_widgets.hsets.growth import grow_set  # noqa: E402
from hsets_widgets.hsets.hessian import HessianRows, hvp_batch, tangents  # noqa: E402
from hsets_widgets.hsets.idg import member_terms, subset_scores  # noqa: E402
from hsets_widgets.hsets.integrated_gradients import path_points  # noqa: E402
from hsets_widgets.hsets.thresholds import ThresholdRule, candidates  # noqa: E402
from hsets_widgets.model.images import to_tensor  # noqa: E402
from hsets_widgets.model.models import load_classifier  # noqa: E402
from hsets_widgets.model.scores import ScoreFn, resolve_target  # noqa: E402

IMAGE = "chelsea"


def _classifier(name, device):
    if name == "efficientnet_lite0":
        return load_classifier(None, device=device)
    from hsets_widgets.model.models import torchvision_classifier  # random weights: timing only

    return torchvision_classifier(name, weights=None).to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _set_tf32(device, prec):
    """TF32 matrix products and convolutions on CUDA for ``tf32``, full fp32 otherwise.
    (``bf16`` casts the model and image: autocast does not follow vmap'd jvp on the CPU.)"""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        torch.backends.cudnn.allow_tf32 = prec == "tf32"


class NaiveRows:
    """One row per autograd.grad call on a retained graph (the authors' way)."""

    def __init__(self, f, x, spec, features="pixel"):
        self.spec, self.features = spec, features
        self.x = x.detach().unsqueeze(0).requires_grad_(True)
        with curvature(spec), torch.enable_grad():
            (self.g,) = torch.autograd.grad(f(self.x).sum(), self.x, create_graph=True)
        self.gp = self.g[0].sum(0).flatten() if features == "pixel" else self.g.flatten()
        self._cache = {}
        self.n_computed = 0

    def row(self, j):
        j = int(j)
        if j not in self._cache:
            with curvature(self.spec):
                (h,) = torch.autograd.grad(self.gp[j], self.x, retain_graph=True)
            h = h[0].sum(0).flatten() if self.features == "pixel" else h.flatten()
            self._cache[j] = h.detach().float().cpu()
            self.n_computed += 1
        return self._cache[j]


def naive_subset_idg(ex, members, subsets) -> np.ndarray:
    """IDG of each subset by integrating its own path (one gradient pass over the path
    points per subset), as the authors' code scores every sampled subset."""
    ig = ex.attribution()
    x, b, dev = ex.x, ig.baseline, ex.x.device
    alphas, weights = path_points(ex.config.n_steps, ex.config.rule)
    al = torch.as_tensor(alphas, dtype=x.dtype, device=dev).view(-1, 1, 1, 1)
    wt = torch.as_tensor(weights, dtype=x.dtype, device=dev).view(-1, 1, 1, 1)
    members = torch.as_tensor(np.asarray(members), device=dev)
    out = []
    for s in subsets:
        mask = torch.zeros(x.shape[1] * x.shape[2], device=dev, dtype=x.dtype)
        mask[members[torch.as_tensor(s, device=dev)]] = 1
        a = (x - b) * mask.view(1, *x.shape[1:])
        a_hat = a / a.norm()
        pts = (b + al * (x - b)).requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(ex.score_fn(pts).sum(), pts)
        out.append(float((wt * g * a_hat).sum()))
    return np.asarray(out)


# ---- workers (each in its own process) --------------------------------------------------
def worker_rows(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    clf = _classifier(args.model, device)
    x = to_tensor(prepare_image(IMAGE, clf.input_size), device)
    if args.channels_last:
        clf.module.to(memory_format=torch.channels_last)
    target, _ = resolve_target(x, clf)
    f = ScoreFn(clf, target)
    spec = CurvatureSpec("softplus", 10.0)
    n = args.rows
    idx = list(range(20000, 20000 + 1 + n + args.batch))  # [first], n timed, warm-up batch
    _set_tf32(device, args.precision)
    times = []  # seconds per row of each timed call (one row naive, one pass batched)
    if args.batch == 0:
        rows = NaiveRows(f, x, spec)
        rows.row(idx[0])
        for j in idx[1:n + 1]:
            _sync(device)
            t0 = time.perf_counter()
            rows.row(j)
            _sync(device)
            times.append(time.perf_counter() - t0)
        out = torch.stack([rows.row(j) for j in idx[1:n + 1]])
    else:
        rows = HessianRows(x, f, "pixel", spec, batch_size=args.batch, method=args.method,
                           zero_warning=False,
                           dtype=torch.bfloat16 if args.precision == "bf16" else None)
        rows.compute(idx[n + 1:])  # warm-up pass (rows not timed)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for start in range(1, n + 1, args.batch):  # n rows in full passes
            chunk = idx[start:start + args.batch]
            _sync(device)
            t0 = time.perf_counter()
            rows.compute(chunk)
            _sync(device)
            times.append((time.perf_counter() - t0) / len(chunk))
        out = rows.rows(idx[1:n + 1])
    # the median call: the two shared cores make single calls vary by tens of percent
    res = {"ms_per_row": float(np.median(times)) * 1e3, "ms_spread": [min(times) * 1e3, max(times) * 1e3],
           "peak_mb": _peak_mb(device)}
    ref_path = Path(args.ref) if args.ref else None
    if ref_path is not None:
        if ref_path.exists():
            ref = torch.load(ref_path)
            k = min(len(ref), len(out))
            o, r = out[:k].float(), ref[:k]
            res["rel_err"] = float((o - r).norm() / r.norm())
            rule = ThresholdRule("topk", 8, "magnitude")
            same = [set(candidates(a.numpy(), rule).tolist()) == set(candidates(c.numpy(), rule).tolist())
                    for a, c in zip(o, r)]
            res["top8_same"] = f"{sum(same)}/{k}"
        else:
            torch.save(out.float(), ref_path)
    if args.flops and args.batch > 0:
        res["gflop_per_row"] = _flops_per_row(rows.f, rows.x, spec, args.batch, args.method) / 1e9
    return res


class _CountFlops(TorchDispatchMode):
    """Adds up the FLOPs torch's counter knows (convolutions, matrix products), without the
    module tracking of ``FlopCounterMode`` (which fails under ``jvp(grad)``)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += int(count(*args, **kwargs, out_val=out))
        return out


def _flops_per_row(f, x, spec, batch, method) -> float:
    """FLOPs of one pass of ``batch`` rows, per row."""
    v = tangents(list(range(batch)), x.shape, "pixel", x.dtype, x.device)
    with curvature(spec), _CountFlops() as fc:
        hvp_batch(x, f, v, method)
    return fc.total / batch


def worker_peak(args) -> dict:
    """Measured matrix-product throughput of this device (the arithmetic limit rows are
    compared against), fp32 (and TF32/bf16 on CUDA, bf16 on CPU)."""
    device = torch.device(args.device)
    n = 8192 if device.type == "cuda" else 2048
    out = {}
    for prec in (["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]):
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        dt = torch.bfloat16 if prec == "bf16" else torch.float32
        a = torch.randn(n, n, device=device, dtype=dt)
        b = torch.randn(n, n, device=device, dtype=dt)
        for _ in range(3):
            a @ b
        _sync(device)
        reps = 20 if device.type == "cuda" else 5
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        out[prec] = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
    return {"gflops": out}


def worker_growth(args) -> dict:
    """Grow one set with naive rows and with the cache; same members?"""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    ex = Explainer(IMAGE, clf, segmenter="slic", device=device)
    seed = ex.seeds(1)[0]
    rule, nu = ThresholdRule("topk", 8, "magnitude"), args.nu
    t0 = time.perf_counter()
    fast = ex.grow(seed, nu=nu)
    _sync(device)
    t_fast = time.perf_counter() - t0
    naive_rows = NaiveRows(ex.score_fn, ex.x, ex.config.curvature_spec)
    t0 = time.perf_counter()
    naive = grow_set(naive_rows, seed.index, rule, nu=nu, order="bfs", max_rows=ex.config.max_rows,
                     prefetch=1)
    _sync(device)
    t_naive = time.perf_counter() - t0
    same = bool(np.array_equal(fast.members, naive.members))
    overlap = len(set(fast.members.tolist()) & set(naive.members.tolist())) / len(fast.members)
    return {"t_fast": t_fast, "t_naive": t_naive, "rows_fast": ex.rows.n_computed,
            "rows_naive": naive_rows.n_computed, "same_members": same, "overlap": overlap,
            "size": len(fast)}


def worker_together(args) -> dict:
    """The default number of sets grown one by one vs side by side (fresh caches)."""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    out = {}
    for mode in ("one by one", "together"):
        ex = Explainer(IMAGE, clf, segmenter="slic", device=device)
        seeds = ex.seeds()
        ex.rows.compute([seeds[0].index])  # warm-up pass, not timed
        passes0 = ex.rows.n_passes
        t0 = time.perf_counter()
        grown = [ex.grow(s) for s in seeds] if mode == "one by one" else ex.grow_many(seeds)
        _sync(device)
        out[mode] = {"s": time.perf_counter() - t0, "rows": ex.rows.n_computed,
                     "passes": ex.rows.n_passes - passes0, "members": [g.members.tolist() for g in grown]}
    out["same"] = out["one by one"].pop("members") == out["together"].pop("members")
    return out


def worker_idg(args) -> dict:
    """Subset scores from the identity vs integrating each subset's path afresh."""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    ex = Explainer(IMAGE, clf, segmenter="slic", device=device)
    ig = ex.attribution()
    members = np.arange(20000, 20000 + 64)  # a 64-pixel set
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, ex.x - ig.baseline)
    subsets = bernoulli_coalitions(len(members), 10000, np.random.default_rng(0))
    t0 = time.perf_counter()
    fast = subset_scores(terms, subsets)
    t_fast = (time.perf_counter() - t0) / len(subsets)
    n_naive = args.naive_subsets
    t0 = time.perf_counter()
    naive = naive_subset_idg(ex, members, subsets[:n_naive])
    _sync(device)
    t_naive = (time.perf_counter() - t0) / n_naive
    err = float(np.max(np.abs(naive - fast[:n_naive])) / (np.abs(fast[:n_naive]).max() + 1e-30))
    return {"us_fast": t_fast * 1e6, "ms_naive": t_naive * 1e3, "ratio": t_naive / t_fast, "rel_err": err}


def worker_road(args) -> dict:
    """ROAD (MoRF and LeRF at the reference's 7 percentages) of one IG map."""
    from hsets_widgets.metrics.road import road

    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    ex = Explainer(IMAGE, clf, segmenter="slic", device=device)
    amap = ex.attribution().attribution.detach().cpu().numpy()
    road(ex.x, clf, amap, percentages=[0.1])  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    r = road(ex.x, clf, amap)
    _sync(device)
    return {"s": time.perf_counter() - t0, "n_images": sum(len(c.percentages) for c in r.curves.values()),
            "peak_mb": _peak_mb(device)}


def _fresh_segmentation_caches():
    from hsets_widgets.segmentation import DEFAULT_CACHE
    from hsets_widgets.segmentation.minisam import clear_embedding_cache

    DEFAULT_CACHE.clear()
    clear_embedding_cache()


def worker_explain(args) -> dict:
    """One whole explanation with the default preset (and the chosen segmenter)."""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    t0 = time.perf_counter()
    ex = Explainer(IMAGE, clf, segmenter=args.segmenter, device=device)
    e = ex.run()
    _sync(device)
    return {"total_s": time.perf_counter() - t0, "timings": e.timings,
            "rows": e.info["hessian_rows_computed"], "passes": ex.rows.n_passes,
            "sets": [len(s) for s in e.sets], "segmenter": e.settings["segmenter"],
            "peak_mb": _peak_mb(device), "class": e.class_name}


def worker_e2e(args) -> dict:
    """A whole explanation, fast vs naive, on the same image and settings, from scratch."""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    over = {"n_samples": args.samples}
    _fresh_segmentation_caches()
    t0 = time.perf_counter()
    ex = Explainer(IMAGE, clf, segmenter=args.segmenter, device=device, **over)
    e = ex.run()
    _sync(device)
    t_fast = time.perf_counter() - t0

    _fresh_segmentation_caches()
    t0 = time.perf_counter()
    nx = Explainer(IMAGE, clf, segmenter=args.segmenter, device=device, **over)
    c = nx.config
    nx.attribution()
    seeds = nx.seeds()
    t_shared = time.perf_counter() - t0
    rows = NaiveRows(nx.score_fn, nx.x, c.curvature_spec, c.features)
    sets, values = [], []
    t1 = time.perf_counter()
    for s in seeds:
        g = grow_set(rows, s.index, c.threshold_rule, c.nu, c.order, nx.allowed_features(s), s.attribution,
                     c.max_rows, prefetch=1)
        sets.append(g.members)
    t_grow = time.perf_counter() - t1
    t1 = time.perf_counter()
    for m in sets:
        # the stream Explainer.value draws from: keyed by the config's seed and the set's seed
        subsets = bernoulli_coalitions(len(m), c.n_samples, np.random.default_rng((c.seed, int(m[0]))))
        values.append(float(np.abs(naive_subset_idg(nx, m, subsets)).mean()))
    _sync(device)
    t_values = time.perf_counter() - t1
    t_naive = time.perf_counter() - t0
    fast_values = np.array([s.value for s in e.sets])
    return {"t_fast": t_fast, "fast_stages": e.timings, "t_naive": t_naive, "naive_shared": t_shared,
            "naive_growth": t_grow, "naive_values": t_values, "rows_fast": ex.rows.n_computed,
            "rows_naive": rows.n_computed, "sets_identical": all(np.array_equal(a.members, b)
                                                                for a, b in zip(e.sets, sets)),
            "value_rel_diff": float(np.max(np.abs(fast_values - values) / np.abs(values))),
            "n_sets": len(sets), "sizes": [len(m) for m in sets], "segmenter": e.settings["segmenter"]}


WORKERS = {"rows": worker_rows, "peak": worker_peak, "growth": worker_growth, "together": worker_together,
           "idg": worker_idg, "road": worker_road, "explain": worker_explain, "e2e": worker_e2e}


def run_worker(kind, **kw) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind]
    for k, v in kw.items():
        if isinstance(v, bool):
            if v:
                cmd.append(f"--{k.replace('_', '-')}")
        elif v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def rows_table(model, args, gpu, peak) -> list:
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    ref = tmp / f"hsets_bench_ref_{model}.pt"
    ref.unlink(missing_ok=True)
    lines = [f"#### Hessian rows ({args.rows} rows timed after a warm-up pass; median call, range in brackets)", "",
             "| variant | ms per row | rows per s | speed-up vs naive | peak memory (MB) | rel. diff vs naive "
             "rows | same top-8 as naive | GFLOP per row | % of measured peak |", "|---|---|---|---|---|---|---|---|---|"]
    naive = run_worker("rows", model=model, device=args.device, batch=0, rows=args.rows, ref=str(ref))
    base = naive.get("ms_per_row")
    if base:
        lo, hi = naive["ms_spread"]
        lines.append(f"| naive (1 row per call, double backward) | {base:.1f} [{lo:.0f}-{hi:.0f}] | {1e3 / base:.2f} | 1.0x | "
                     f"{naive['peak_mb']:.0f} | reference | reference | | |")
    else:
        lines.append(f"| naive | failed: {naive.get('error')} | | | | | | | |")
    variants = []
    batches = args.batches or ([1, 16, 64] if gpu else [1, 2, 4, 8])
    main_b = 16 if gpu else 4
    for b in batches:
        variants.append(("forward-over-reverse", b, "fp32", False))
    variants += [("stacked", main_b, "fp32", False), ("double-backward", main_b, "fp32", False),
                 ("forward-over-reverse", main_b, "fp32", True)]
    for prec in (["tf32", "bf16"] if gpu else ["bf16"]):
        variants.append(("forward-over-reverse", batches[-1] if gpu else main_b, prec, False))
    for method, b, prec, cl in variants:
        name = f"{method}, batch {b}, {prec}{', channels-last' if cl else ''}"
        r = run_worker("rows", model=model, device=args.device, batch=b, rows=args.rows, precision=prec,
                       channels_last=cl, method=method, ref=str(ref), flops=method == "forward-over-reverse" and not cl)
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:120]} | | | | | | | |")
            continue
        sp = f"{base / r['ms_per_row']:.1f}x" if base else "-"
        flop = r.get("gflop_per_row")
        limit = peak.get("tf32" if prec == "tf32" else ("bf16" if prec == "bf16" else "fp32")) if peak else None
        eff = f"{100 * flop / (r['ms_per_row'] / 1e3) / limit:.1f}%" if flop and limit else ""
        lo, hi = r["ms_spread"]
        lines.append(f"| {name} | {r['ms_per_row']:.1f} [{lo:.0f}-{hi:.0f}] | {1e3 / r['ms_per_row']:.2f} | {sp} | {r['peak_mb']:.0f} | "
                     f"{r.get('rel_err', float('nan')):.1e} | {r.get('top8_same', '')} | "
                     f"{f'{flop:.2f}' if flop else ''} | {eff} |")
        print(lines[-1], flush=True)
    return lines


def _default_description() -> str:
    from hsets_widgets.hsets.presets import get_config

    c = get_config("default")
    return (f"{c.n_sets} sets, nu = {c.nu}{' inside the seed segment' if c.within_mask else ''}, "
            f"{c.threshold_rule.describe()}, {c.curvature_spec.describe()}, IG {c.n_steps} {c.rule} steps, "
            f"{c.n_samples:,} subsets per set")


def explain_models(models, args, device, load) -> None:
    """One whole default explanation per model, each in its own process."""
    lines = [f"## Whole explanations per model ({device.type})", "",
             f"Machine: {machine()}; load average {load:.1f} when the run started. Commit {git_rev()}. Command: "
             f"`python bench/bench_hessian.py --explain-only --models {' '.join(models)}`. Image: scikit-image "
             f"`{IMAGE}` at each model's input size, default preset ({_default_description()}), "
             "segmenter chosen by `auto`. torchvision models have random weights here "
             "(no downloads): the times and memory are real, the sets are not meaningful.", "",
             "| model | whole explanation (s) | IG (s) | segmentation (s) | growth (s) | values (s) | Hessian rows | "
             "passes | s per row | peak memory (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for model in models:
        e = run_worker("explain", model=model, device=args.device, segmenter=args.segmenter)
        if "error" in e:
            lines.append(f"| {model} | failed: {e['error'][:120]} | | | | | | | | |")
            continue
        t = e["timings"]
        lines.append(f"| {model} | {e['total_s']:.1f} | {t.get('integrated_gradients', 0):.1f} | "
                     f"{t.get('segmentation', 0):.1f} | {t.get('growth', 0):.1f} | {t.get('values', 0):.2f} | "
                     f"{e['rows']} | {e['passes']} | {t.get('growth', 0) / max(e['rows'], 1):.2f} | {e['peak_mb']:.0f} |")
        print(lines[-1], flush=True)
    out = write_section(f"hessian-{device.type}-models", "\n".join(lines))
    print(f"wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=sorted(WORKERS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, nargs="+", default=None)
    p.add_argument("--method", default="forward-over-reverse")
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--flops", action="store_true")
    p.add_argument("--ref", default=None)
    p.add_argument("--nu", type=int, default=64)
    p.add_argument("--naive-subsets", type=int, default=5)
    p.add_argument("--samples", type=int, default=30, help="subsets per set in the end-to-end comparison")
    p.add_argument("--segmenter", default="auto")
    p.add_argument("--explain-only", action="store_true",
                   help="only the whole explanation of each model (section hessian-<device>-models)")
    p.add_argument("--e2e-models", nargs="*", default=None,
                   help="models for the naive end-to-end comparison (default: resnet50 on GPU, "
                        "efficientnet_lite0 on CPU)")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    models = args.models or (["resnet50", "vgg16", "densenet121", "efficientnet_lite0"] if gpu
                             else ["efficientnet_lite0"])
    e2e_models = args.e2e_models if args.e2e_models is not None else (["resnet50"] if gpu else ["efficientnet_lite0"])
    load = os.getloadavg()[0]
    if args.explain_only:
        return explain_models(models, args, device, load)
    peak = run_worker("peak", device=args.device).get("gflops", {})
    lines = [f"## Hessian rows, growth, IDG, ROAD and whole explanations ({device.type})", "",
             f"Machine: {machine()}; load average {load:.1f} when the run started (other jobs on "
             f"these cores slow every variant, not evenly). Commit {git_rev()}. Command: `python bench/bench_hessian.py"
             f"{' --models ' + ' '.join(models) if args.models else ''}`. Image: scikit-image `{IMAGE}`, "
             "224x224, pixel features, softplus(10) curvature, fp32 unless noted; torchvision models have "
             "random weights (timing only). Naive = one row per `autograd.grad` call on a retained "
             "double-backward graph (the authors' way). Forward-over-reverse = `vmap` of `jvp(grad(f))` over "
             "one-hot tangents (the image's own pass runs once per batch); stacked = the image copied once per "
             "tangent in a batch. Measured matrix-product peak of this device (same run): "
             + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peak.items())
             + ". GFLOP per row counts convolutions and matrix products (torch's FLOP counter); the last "
             "column is that over the time per row, as a share of the measured peak.", ""]
    for model in models:
        lines += [f"### {model}", ""]
        lines += rows_table(model, args, gpu, peak)
        g = run_worker("growth", model=model, device=args.device, nu=args.nu)
        if "error" not in g:
            lines += ["", f"Growth of one set (top 8 per row, nu = {args.nu}, BFS): cached+batched "
                      f"{g['t_fast']:.1f} s ({g['rows_fast']} rows) vs naive {g['t_naive']:.1f} s "
                      f"({g['rows_naive']} rows): **{g['t_naive'] / g['t_fast']:.1f}x**; identical members: "
                      f"{g['same_members']} (overlap {g['overlap']:.0%}, {g['size']} members)."]
        t = run_worker("together", model=model, device=args.device)
        if "error" not in t:
            a, b = t["one by one"], t["together"]
            lines += ["", f"Growing the default 5 sets (nu = 64) one by one: {a['s']:.1f} s in {a['passes']} passes "
                      f"({a['rows']} rows); side by side in shared passes: {b['s']:.1f} s in {b['passes']} passes "
                      f"({b['rows']} rows): **{a['s'] / b['s']:.1f}x**; identical sets: {t['same']}."]
        idg = run_worker("idg", model=model, device=args.device)
        if "error" not in idg:
            lines += ["", f"IDG of a subset (64-pixel set): identity {idg['us_fast']:.2f} us per subset "
                      f"({1e6 / idg['us_fast']:,.0f} subsets per s) vs naive path integration "
                      f"{idg['ms_naive']:.0f} ms per subset ({1e3 / idg['ms_naive']:.2f} per s): "
                      f"**{idg['ratio']:.1e}x**; max relative difference {idg['rel_err']:.1e}."]
        r = run_worker("road", model=model, device=args.device)
        if "error" not in r:
            lines += ["", f"ROAD of one map (MoRF + LeRF, 7 percentages each, noisy linear imputation): "
                      f"**{r['s']:.2f} s per image** ({r['n_images']} imputed images classified), peak memory "
                      f"{r['peak_mb']:.0f} MB."]
        e = run_worker("explain", model=model, device=args.device, segmenter=args.segmenter)
        if "error" not in e:
            lines += ["", f"Whole explanation, default preset, segmenter {e['segmenter']}: "
                      f"**{e['total_s']:.1f} s** (stages: {e['timings']}), {e['rows']} Hessian rows in "
                      f"{e['passes']} passes, set sizes {e['sets']}, peak memory {e['peak_mb']:.0f} MB, "
                      f"predicted {e['class']}."]
        else:
            lines += ["", f"Whole explanation failed: {e['error']}"]
        if model in e2e_models:
            r = run_worker("e2e", model=model, device=args.device, segmenter=args.segmenter, samples=args.samples)
            if "error" not in r:
                lines += ["", f"End to end against the naive reference (default preset with {args.samples} subset "
                          f"samples per set, as the authors' code; both from scratch, segmenter {r['segmenter']}): "
                          f"fast **{r['t_fast']:.1f} s** ({r['rows_fast']} rows) vs naive **{r['t_naive']:.1f} s** "
                          f"(IG + segmentation {r['naive_shared']:.1f} s, growth {r['naive_growth']:.1f} s for "
                          f"{r['rows_naive']} rows, subset values {r['naive_values']:.1f} s): "
                          f"**{r['t_naive'] / r['t_fast']:.1f}x**; sets identical: {r['sets_identical']} "
                          f"({r['n_sets']} sets of {r['sizes']}), largest relative value difference "
                          f"{r['value_rel_diff']:.1e}."]
            else:
                lines += ["", f"End-to-end comparison failed: {r['error']}"]
        lines.append("")
        print("\n".join(lines[-14:]), flush=True)
    out = write_section(f"hessian-{device.type}", "\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
