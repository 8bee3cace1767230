"""Speed of H-Sets against a naive reference, measured side by side in one run.

The naive reference does what the authors' code does: one Hessian row per
``autograd.grad`` call on a retained double-backward graph, and every sampled subset's
IDG integrated afresh along the path (``n_steps`` gradient passes per subset). The fast
path batches rows (forward-over-reverse, several rows per pass, cached) and scores subsets
with the path-gradient identity. Outputs are compared so a speed-up never changes a result.

    python bench/bench_hessian.py                      # this CPU, default model
    python bench/bench_hessian.py --models resnet50 vgg16 densenet121 efficientnet_lite0  # GPU

Each measurement runs in its own subprocess so peak memory is that configuration's alone.
Results go to bench/RESULTS.md (section "hessian-<device>").
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

sys.path.insert(0, str(Path(__file__).parent))
from _results import git_rev, machine, write_section  # noqa: E402

from hsets_widgets.curvature import CurvatureSpec, curvature  # noqa: E402
from hsets_widgets.explain import Explainer, prepare_image  # noqa: E402
from hsets_widgets.growth import ThresholdRule, grow_set  # noqa: E402
from hsets_widgets.hessian import HessianRows  # noqa: E402
from hsets_widgets.idg import bernoulli_subsets, member_terms, subset_scores  # noqa: E402
from hsets_widgets.images import to_tensor  # noqa: E402
from hsets_widgets.integrated_gradients import path_points  # noqa: E402
from hsets_widgets.models import load_classifier  # noqa: E402
from hsets_widgets.scores import ScoreFn, resolve_target  # noqa: E402


def _classifier(name, device):
    if name == "efficientnet_lite0":
        return load_classifier(None, device=device)
    from hsets_widgets.models import torchvision_classifier  # random weights: timing only

    return torchvision_classifier(name, weights=None).to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class NaiveRows:
    """One row per autograd.grad call on a retained graph (the authors' way)."""

    def __init__(self, f, x, spec, features="pixel"):
        self.spec, self.features = spec, features
        self.x = x.detach().unsqueeze(0).requires_grad_(True)
        self._mode = curvature(spec)
        self._mode.__enter__()
        with torch.enable_grad():
            (self.g,) = torch.autograd.grad(f(self.x).sum(), self.x, create_graph=True)
        self._mode.__exit__(None, None, None)
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


# ---- workers (each in its own process) --------------------------------------------------
def worker_rows(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    clf = _classifier(args.model, device)
    x = to_tensor(prepare_image("chelsea", clf.input_size), device)
    if args.channels_last:
        clf.module.to(memory_format=torch.channels_last)
    target, _ = resolve_target(clf, x)
    f = ScoreFn(clf, target)
    spec = CurvatureSpec("softplus", 10.0)
    idx = list(range(20000, 20000 + args.rows))
    prec = args.precision
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        torch.backends.cudnn.allow_tf32 = prec == "tf32"
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if prec == "bf16" else torch.autocast(
        device.type, enabled=False)
    with ctx:
        if args.batch == 0:
            rows = NaiveRows(f, x, spec)
            rows.row(idx[0])
            _sync(device)
            t0 = time.perf_counter()
            out = torch.stack([rows.row(j) for j in idx[1:]])
            _sync(device)
            per_row = (time.perf_counter() - t0) / (len(idx) - 1)
        else:
            rows = HessianRows(f, x, "pixel", spec, batch_size=args.batch, zero_warning=False)
            rows.compute(idx[:args.batch])  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            rows.compute(idx[args.batch:])
            _sync(device)
            n = len(idx) - args.batch
            per_row = (time.perf_counter() - t0) / max(n, 1)
            out = rows.rows(idx[1:])
    ref_path = Path(args.ref) if args.ref else None
    err = None
    if ref_path is not None:
        if ref_path.exists():
            ref = torch.load(ref_path)
            k = min(len(ref), len(out))
            err = float((out[:k].float() - ref[:k]).norm() / ref[:k].norm())
        else:
            torch.save(out.float(), ref_path)
            err = 0.0
    return {"ms_per_row": per_row * 1e3, "peak_mb": _peak_mb(device), "rel_err": err}


def worker_growth(args) -> dict:
    """Grow the default set with naive rows and with the cache; same members?"""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    ex = Explainer("chelsea", clf, segmenter="slic", device=device)
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


def worker_idg(args) -> dict:
    """Subset scores from the identity vs integrating each subset's path afresh."""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    ex = Explainer("chelsea", clf, segmenter="slic", device=device)
    ig = ex.attribution()
    members = np.arange(20000, 20000 + 64)  # a 64-pixel set
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, ex.x - ig.baseline)
    rng = np.random.default_rng(0)
    subsets = bernoulli_subsets(len(members), 10000, rng)
    t0 = time.perf_counter()
    fast = subset_scores(terms, subsets)
    t_fast = (time.perf_counter() - t0) / len(subsets)
    alphas, weights = path_points(ex.config.n_steps, ex.config.rule)
    n_naive = args.naive_subsets
    naive = []
    t0 = time.perf_counter()
    b = ig.baseline
    for s in subsets[:n_naive]:
        mask = torch.zeros(ex.x.shape[1] * ex.x.shape[2], device=device)
        mask[torch.as_tensor(members[s], device=device)] = 1
        a = (ex.x - b) * mask.view(1, *ex.x.shape[1:])
        a_hat = a / a.norm()
        pts = (b + torch.as_tensor(alphas, dtype=ex.x.dtype, device=device).view(-1, 1, 1, 1) * (ex.x - b))
        pts.requires_grad_(True)
        (g,) = torch.autograd.grad(ex.score_fn(pts).sum(), pts)
        naive.append(float((torch.as_tensor(weights, dtype=g.dtype, device=device).view(-1, 1, 1, 1)
                            * g * a_hat).sum()))
    _sync(device)
    t_naive = (time.perf_counter() - t0) / n_naive
    err = float(np.max(np.abs(np.asarray(naive) - fast[:n_naive])) / (np.abs(fast[:n_naive]).max() + 1e-30))
    return {"us_fast": t_fast * 1e6, "ms_naive": t_naive * 1e3, "ratio": t_naive / t_fast, "rel_err": err}


def worker_explain(args) -> dict:
    """One whole explanation with the default preset (and SLIC or the auto segmenter)."""
    device = torch.device(args.device)
    clf = _classifier(args.model, device)
    t0 = time.perf_counter()
    ex = Explainer("chelsea", clf, segmenter=args.segmenter, device=device)
    e = ex.run()
    _sync(device)
    return {"total_s": time.perf_counter() - t0, "timings": e.timings,
            "rows": e.info["hessian_rows_computed"], "sets": [len(s) for s in e.sets],
            "segmenter": e.settings["segmenter"], "peak_mb": _peak_mb(device),
            "class": e.class_name}


WORKERS = {"rows": worker_rows, "growth": worker_growth, "idg": worker_idg, "explain": worker_explain}


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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=sorted(WORKERS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, nargs="+", default=None)
    p.add_argument("--rows", type=int, default=17)
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--ref", default=None)
    p.add_argument("--nu", type=int, default=64)
    p.add_argument("--naive-subsets", type=int, default=5)
    p.add_argument("--segmenter", default="auto")
    p.add_argument("--skip-explain", action="store_true")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    models = args.models or (["resnet50", "vgg16", "densenet121", "efficientnet_lite0"] if gpu
                             else ["efficientnet_lite0"])
    batches = args.batches or ([1, 16, 64] if gpu else [1, 4, 8])
    precisions = ["fp32", "tf32", "bf16"] if gpu else ["fp32"]
    load = os.getloadavg()[0]
    lines = [f"## Hessian rows, growth, IDG and whole explanations ({device.type})", "",
             f"Machine: {machine()}; load average {load:.1f} when the run started (other jobs on "
             f"these cores slow every variant, not evenly). Commit {git_rev()}. Command: `python bench/bench_hessian.py"
             f"{' --models ' + ' '.join(models) if args.models else ''}`. Image: scikit-image `chelsea`, "
             "224x224, pixel features, softplus(10) curvature, fp32 unless noted. Naive = one row "
             "per `autograd.grad` call on a retained double-backward graph (the authors' way).", ""]
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for model in models:
        ref = tmp / f"hsets_bench_ref_{model}.pt"
        ref.unlink(missing_ok=True)
        lines += [f"### {model}", "", "| variant | ms per row | speed-up vs naive | peak memory (MB) | rel. diff vs naive rows |",
                  "|---|---|---|---|---|"]
        naive = run_worker("rows", model=model, device=args.device, batch=0, rows=args.rows, ref=str(ref))
        base = naive.get("ms_per_row")
        lines.append(f"| naive (1 row per call, double backward) | {base:.1f} | 1.0x | {naive['peak_mb']:.0f} | reference |"
                     if base else f"| naive | failed: {naive.get('error')} | | | |")
        for prec in precisions:
            for cl in ([False, True] if prec == "fp32" else [False]):
                for b in batches:
                    if cl and not gpu and b != 4:
                        continue  # on the CPU, channels-last is measured at batch 4 only
                    r = run_worker("rows", model=model, device=args.device, batch=b, rows=max(args.rows, 2 * b + 1),
                                   precision=prec, channels_last=cl, ref=str(ref))
                    if "error" in r:
                        lines.append(f"| batched {b}, {prec}{', channels-last' if cl else ''} | failed: {r['error']} | | | |")
                        continue
                    sp = f"{base / r['ms_per_row']:.1f}x" if base else "-"
                    lines.append(f"| forward-over-reverse, batch {b}, {prec}{', channels-last' if cl else ''} | "
                                 f"{r['ms_per_row']:.1f} | {sp} | {r['peak_mb']:.0f} | {r['rel_err']:.1e} |")
                    print(lines[-1], flush=True)
        g = run_worker("growth", model=model, device=args.device, nu=args.nu)
        if "error" not in g:
            lines += ["", f"Growth of one set (top 8 per row, nu = {args.nu}, BFS): cached+batched "
                      f"{g['t_fast']:.1f} s ({g['rows_fast']} rows) vs naive {g['t_naive']:.1f} s "
                      f"({g['rows_naive']} rows): **{g['t_naive'] / g['t_fast']:.1f}x**; identical members: "
                      f"{g['same_members']} (overlap {g['overlap']:.0%}, {g['size']} members)."]
        idg = run_worker("idg", model=model, device=args.device)
        if "error" not in idg:
            lines += ["", f"IDG of a subset (64-pixel set): identity {idg['us_fast']:.2f} us per subset vs naive "
                      f"path integration {idg['ms_naive']:.0f} ms per subset: **{idg['ratio']:.1e}x**; "
                      f"max relative difference {idg['rel_err']:.1e}."]
        if not args.skip_explain:
            e = run_worker("explain", model=model, device=args.device, segmenter=args.segmenter)
            if "error" not in e:
                lines += ["", f"Whole explanation, default preset, segmenter {e['segmenter']}: "
                          f"**{e['total_s']:.1f} s** (stages: {e['timings']}), {e['rows']} Hessian rows, "
                          f"set sizes {e['sets']}, peak memory {e['peak_mb']:.0f} MB, predicted {e['class']}."]
            else:
                lines += ["", f"Whole explanation failed: {e['error']}"]
        lines.append("")
        print("\n".join(lines[-6:]), flush=True)
    out = write_section(f"hessian-{device.type}", "\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
