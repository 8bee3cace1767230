"""Write the tutorial notebooks from the cell lists below (then execute them with nbconvert).

    python notebooks/make_notebooks.py [02 03 ...]   # all, or the ones named
    jupyter nbconvert --to notebook --execute --inplace notebooks/0*.ipynb

Cells tagged ``# NBVAL_CHECK_OUTPUT`` have their printed output compared by nbval in the test
suite; the rest only have to run. Sizes are kept small so the notebooks run in CI.
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text):
    return nbf.v4.new_code_cell(text.strip())


SETUP = code("""
import warnings
import numpy as np
import matplotlib.pyplot as plt
import hsets_widgets as hs
warnings.filterwarnings("ignore", category=FutureWarning)
""")

NOTEBOOKS = {
    "01_quickstart.ipynb": [
        md("""
# Quickstart: what interacts in this photo?

H-Sets explains an image classifier with **sets of pixels that act together**. It

1. finds the most important pixel of each segment (Integrated Gradients inside Segment Anything masks),
2. asks the network's input **Hessian** which other pixels interact with that *seed*,
3. grows a set from those interactions, recursively, and
4. gives every set one value with **Integrated Directional Gradients** (IDG).

Everything below runs offline on a laptop CPU: the classifier is an ImageNet EfficientNet-Lite0
whose weights ship in a pip package, and the masks come from a small Segment-Anything model.
"""),
        SETUP,
        md("The photo is scikit-image's bundled cat, cropped to the classifier's 224 x 224 input."),
        code("""
ex = hs.Explainer("chelsea")          # the default preset, model and segmenter
print(f"the model sees: {ex.class_name} (p = {ex.probability:.2f})")
plt.imshow(ex.image); plt.axis("off");
"""),
        md("""
`run` does every step with the default settings: seeds in the 5 segments that carry the most
positive IG, each set grown inside its segment up to `nu = 2000` pixels, each Hessian row adding
the 256 pixels that interact most strongly with it (magnitudes smoothed over 2 pixels, so sets stay
compact). That takes about half a minute on a laptop CPU.
"""),
        code("""
explanation = ex.run()
for k, s in enumerate(explanation.sets):
    print(f"set {k}: seed at {s.seed_yx}, {len(s)} pixels, value {s.value:.3f} +- {s.stderr:.3f}")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(len(explanation.sets), "sets;", all(len(s) <= 2000 for s in explanation.sets))
"""),
        md("""
**Reading the heatmap.** Each coloured region is one interaction set: the pixels the seed's Hessian row
pointed to, and the pixels *their* rows pointed to. Brighter means a larger set value: moving those
pixels together from black towards the photo changes the cat score more. Inside a set, the seed and
the pixels that joined first are painted brighter (1.5x the set's value, fading to 0.5x for the last
ones), so the map also orders the pixels within each set. `explanation.save_compare_png(...)` writes
this figure with a colour bar; `hsets demo` writes it as `compare.png`.
"""),
        code("""
from hsets_widgets.heatmap import overlay
fig, ax = plt.subplots(1, 3, figsize=(12, 4))
ax[0].imshow(explanation.image); ax[0].set_title("input")
ax[1].imshow(explanation.ig.sum(0), cmap="bwr"); ax[1].set_title("Integrated Gradients")
ax[2].imshow(overlay(explanation.image, explanation.heatmap)); ax[2].set_title("H-Sets")
for s in explanation.sets:
    ax[2].plot(s.seed_yx[1], s.seed_yx[0], "c+", ms=12)
for a in ax: a.axis("off")
"""),
        md("""
Explanations save to one file and load back unchanged:
"""),
        code("""
path = explanation.save("quickstart_explanation.npz")
again = hs.Explanation.load(path)
print(np.array_equal(again.heatmap, explanation.heatmap))
"""),
        md("""
## Explore it interactively

The Explorer shows every step: click a pixel to grow a set from it, move the threshold sliders,
replay the merge, watch the subset sampling converge and compare ROAD curves against IG.
(It renders in JupyterLab, Notebook 7 and Voila; `hsets explore` serves it as an app.)
"""),
        code("""
explorer = hs.Explorer(ex)
explorer
"""),
    ],
    "02_hessian_rows_and_curvature.ipynb": [
        md("""
# The Hessian row, and why ReLU networks need a curvature option

The Hessian row of a seed pixel `j` says how the gradient at every pixel changes when pixel `j`
changes: large entries mark pixels that **interact** with `j`. A ReLU (or ReLU6, max-pool) network is
piecewise linear, so its input Hessian is exactly zero almost everywhere. H-Sets therefore
computes rows on a smoothed copy of the activations, inside a context manager that leaves your model
untouched.
"""),
        SETUP,
        code("""
ex = hs.Explainer("chelsea", segmenter="slic")
seed = ex.seeds(1)[0]
print("seed pixel", seed.yx)
"""),
        md("Without a curvature option, the row is zero and H-Sets says so loudly:"),
        code("""
from hsets_widgets.hessian import HessianRows
from hsets_widgets.curvature import CurvatureSpec
flat = HessianRows(ex.x, ex.score_fn, "pixel", CurvatureSpec("none"))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    row = flat.row(seed.index)
print("nonzero entries:", int((row != 0).sum()))
print([str(w.message) for w in caught if issubclass(w.category, hs.ZeroHessianWarning)][0])
"""),
        md("""
Two fixes: **softplus** (`relu(x) -> softplus(beta x)/beta`, a smooth network whose gradients are real)
and the authors' **surrogate** (exact forward values, a smooth made-up derivative). Both rows are
concentrated around the seed, with signed structure:
"""),
        code("""
rows = {}
for spec in (CurvatureSpec("softplus", beta=10), CurvatureSpec("surrogate", tau=1e-3)):
    rows[spec.describe()] = HessianRows(ex.x, ex.score_fn, "pixel", spec).pixel_image(seed.index)
fig, ax = plt.subplots(1, 2, figsize=(9, 4))
for a, (name, r) in zip(ax, rows.items()):
    v = np.abs(r).max()
    a.imshow(r, cmap="bwr", vmin=-v, vmax=v); a.plot(seed.yx[1], seed.yx[0], "k+", ms=14)
    a.set_title(name); a.axis("off")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print({name: bool(np.abs(r).max() > 0) for name, r in rows.items()})
"""),
        md("""
**What to notice.** The largest entries sit near the seed: nearby pixels share receptive fields. The
sign flips from pixel to pixel, which is why a threshold on the signed row gives speckled sets, and why
the default rule keeps the top entries by magnitude.

Rows are computed in batches (several rows per forward-over-reverse pass) and cached, so no row is
ever computed twice in a session:
"""),
        code("""
r = ex.rows
r.compute([seed.index + d for d in range(8)])
print(f"{r.n_computed} rows in {r.n_passes} passes, {r.seconds / max(r.n_computed, 1):.2f} s per row")
"""),
    ],
    "03_thresholds_and_merge.ipynb": [
        md("""
# Thresholds and the recursive merge

From the seed, every row entry that passes the threshold `mu` admits a pixel; each new pixel's row
is then read in turn, until nothing new passes or the set has `nu` members. The rule decides what
"passes" means:

| rule | passes when |
|---|---|
| `topk` (default) | among the `mu` largest entries of the row |
| `absolute` | entry > `mu` |
| `seed-fraction` (paper) | entry > `mu` x seed attribution |
| `minmax` (authors' code) | row rescaled to [0, 1] > `mu` |

Two options change what is compared. `row_blur` (default 2 pixels) smooths the row's magnitudes
over the image first: Hessian entries flip sign from pixel to pixel, and without smoothing the
strongest entries are scattered single pixels. `fresh=True` (default) takes the `mu` strongest
pixels *not yet in the set*, so every row adds exactly `mu` members; the plain top-k would drop the
candidates already in, and a compact set would need many more rows. Growth also stays inside the
seed's segment (`within_mask=True`).
"""),
        SETUP,
        code("""
ex = hs.Explainer("chelsea", segmenter="slic")
seed = ex.seeds(1)[0]
sets = {mu: ex.grow(seed, mu=mu, nu=32) for mu in (2, 4, 8)}
print({mu: len(g) for mu, g in sets.items()}, "rows computed:", ex.rows.n_computed)
"""),
        md("Regrowing with another `nu` or threshold reads cached rows only:"),
        code("""
before = ex.rows.n_computed
small = ex.grow(seed, mu=8, nu=16)
print("new rows:", ex.rows.n_computed - before)
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(list(small.members) == list(sets[8].members[:16]))
"""),
        md("""
## Replaying the merge

The growth is recorded as a trace: which row added which pixels, in order. Replaying the first `k`
steps shows how the set spreads out from the seed (the Explorer animates this with a Play button).
"""),
        code("""
g = sets[8]
steps = [0, 1, 2, len(g.steps)]
fig, ax = plt.subplots(1, len(steps), figsize=(3 * len(steps), 3))
for a, k in zip(ax, steps):
    m = np.zeros(224 * 224); m[g.members_after(k)] = 1
    a.imshow(ex.image); a.imshow(m.reshape(224, 224), alpha=0.6, cmap="Reds")
    a.set_title(f"after {k} rows: {len(g.members_after(k))} px"); a.axis("off")
"""),
        code("""
for step in g.steps[:4]:
    print(f"row of pixel {divmod(step.row, 224)} added {len(step.added)} pixels")
"""),
        md("""
## Choosing mu by evidence: a sweep

`sweep` grows the whole explanation at every value (from the cached rows where it can) and
scores each heatmap as `hsets evaluate` would: ROAD MoRF AOPC (higher: removing the pixels it
ranks first hurts the prediction more) and LeRF AOPC (lower is better), sparsity and support,
with IG and a random map on the same photo as reference rows. `hsets sweep chelsea --mu 64 128 256`
does the same from the shell and writes a CSV and a plot. On one photo the differences are
noisy; `bench/faithfulness.py` is how the default was chosen over many photos.
"""),
        code("""
from hsets_widgets.evaluation.sweep import sweep
rows = sweep(ex, mu=[64, 256], n_sets=[3], percentages="road", as_frame=False)  # a DataFrame by default
for r in rows:
    name = f"mu = {r['mu']:g}" if r["method"] == "hsets" else r["method"]
    print(f"{name:10s} MoRF {r['morf_aopc']:.3f}  LeRF {r['lerf_aopc']:.3f}  "
          f"sparsity {r['sparsity']:.3f}  support {100 * r['support_fraction']:.1f}%")
"""),
        md("""
What it teaches: on one photo (and SLIC segments, three sets) `mu` changes the numbers by a few
hundredths either way, while IG stays ahead on MoRF: its largest values are scattered single
pixels, which ROAD's first removals reward. Read one photo's sweep as a hint, not a verdict;
the shipped `mu = 256` was chosen on 45 photos (`bench/FAITHFULNESS.md`), where it ties IG.
"""),
    ],
    "04_idg_and_subset_sampling.ipynb": [
        md("""
# Valuing a set: IDG and subset sampling

A set `I` is valued by Integrated Directional Gradients: move only the pixels of `I` from the
baseline towards the photo and integrate the gradient along that direction. Its value sums `|IDG(T)|`
over all subsets `T` of `I`: that is 2^|I| terms, so it is estimated from random subsets and reported
as the **mean** over subsets, with a standard error (the full sum is shown as `log2_total`).

Because the path does not depend on `T`, `IDG(T)` is just (IG mass of `T`) / (norm of `T`'s displacement):
scoring thousands of subsets costs milliseconds.
"""),
        SETUP,
        code("""
ex = hs.Explainer("chelsea", segmenter="slic")
seed = ex.seeds(1)[0]
g = ex.grow(seed, nu=32)
v = ex.value(g.members)
print(f"{len(g)} pixels: value {v.value:.4f} +- {v.stderr:.4f} from {v.n_samples} subsets; "
      f"log2 of the full sum = {v.log2_total:.1f}")
"""),
        md("The running estimate settles as samples accumulate:"),
        code("""
from hsets_widgets.idg import running_estimate
mean, se = running_estimate(v.samples)
n = np.arange(1, len(mean) + 1)
plt.plot(n, mean); plt.fill_between(n, mean - 2 * se, mean + 2 * se, alpha=0.3)
plt.xscale("log"); plt.xlabel("subsets drawn"); plt.ylabel("estimate of mean |IDG|");
"""),
        md("For small sets the value is exact (every subset scored), and sampling converges to it:"),
        code("""
small = g.members[:10]
exact = ex.value(small)
from hsets_widgets.idg import estimate_value, member_terms
ig = ex.attribution()
terms = member_terms(small, ig.path_gradient, ig.abs_path_gradient, ex.x - ig.baseline)
sampled = estimate_value(terms, n_samples=4000, exact_limit=0, seed=0)
print(f"exact {exact.value:.5f} over {exact.n_samples} subsets; sampled {sampled.value:.5f} +- {sampled.stderr:.5f}")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(exact.exact, abs(sampled.value - exact.value) < 4 * sampled.stderr)
"""),
        md("""
## Do the set's pixels act together? The interaction test

A set's value says how much it matters, not whether its pixels act *together*. The interaction
test asks the model directly. It cuts the set into 6 compact parts, removes every coalition of
parts (replacing them with a blurred copy of the photo) and scores the class logit: 2^6 = 64
images. If the parts acted alone, the score would be the sum of their separate effects; the
**interaction share** is the part of the game's variance that no such additive model explains
(0: the parts add up, 1: they matter only together).

A share means little on its own: any compact region has some, because neighbouring pixels make
edges and textures together. So the same number is computed for **control regions** of the same
size from the same seed, chosen without the Hessian: the segment's pixels nearest the seed (a
disk), the segment's pixels of largest smoothed |IG|, and the set's own shape moved twice.
Read the share next to the **effect** (the logit with the whole set present minus with it removed):
when removing the whole set barely moves the logit, the share is a share of almost nothing.
`p` is the set's rank among its 4 controls: 0.2 when it beats all of them, which one set can
reach by chance one time in five, so read many sets (``hsets evaluate --interactions``).
"""),
        code("""
from hsets_widgets.evaluation.interactions import explainer_test
big = ex.grow(seed)                      # the default nu this time
t = explainer_test(ex, big.members, seed.yx)
print(f"{len(big)} pixels, {t.n_forward} forward passes")
print(t.verdict())
for region in (t.set,) + t.controls:
    print(f"  {region.name:10s} share {region.nonadditive:.3f}   effect on the logit {region.effect:+.2f}")
"""),
        md("""
The pairwise interaction between parts (Shapley interaction index, as shapiq computes it) says
which parts need each other: positive when together they add more than apart.
"""),
        code("""
plt.figure(figsize=(4, 3.2))
plt.imshow(t.set.pairs, cmap="bwr", vmin=-abs(t.set.pairs).max(), vmax=abs(t.set.pairs).max())
plt.colorbar(label="interaction (logit)"); plt.xlabel("part"); plt.ylabel("part");
"""),
        md("""
### A model with a known answer

On a photo nobody knows which pixels really interact. The planted classifiers of
`hsets_widgets.planted` do: the class score multiplies two distant patches (a *pair*), so they
matter only together, while another patch has a main effect only. With a threshold floor
(`row_floor`: a pixel joins only if its Hessian entry is at least that share of the row's largest)
and growth allowed across segments (`within_mask=False`), the set grown from the first patch is
exactly the pair, and the test sets it apart from its controls:
"""),
        code("""
import warnings
from hsets_widgets.planted import planted_classifier, scene
sc = scene(64)
toy = planted_classifier(sc["terms"], 64)
halves = np.ones((64, 64), np.int64); halves[:, 32:] = 2          # the pair straddles two segments
toy_ex = hs.Explainer(sc["image"], model=toy, segmenter=halves, target=0, device="cpu", dtype="float64",
                      row_floor=0.3, within_mask=False)
patch = sc["pair"][0]
toy_seed = toy_ex.seed_at(patch.y0 + 3, patch.x0 + 3)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")      # a toy: its non-interacting Hessian entries are exactly zero
    grown = toy_ex.grow(toy_seed)
toy_test = explainer_test(toy_ex, grown.members, toy_seed.yx, removal="baseline")
print(f"{len(grown)} pixels grown;", toy_test.verdict())
"""),
        code("""
# NBVAL_CHECK_OUTPUT
want = set().union(*(q.pixels(64).tolist() for q in toy.module.interacting(patch) | {patch}))
print(set(grown.members.tolist()) == want, toy_test.above_controls)
"""),
        md("""
How the shipped `default` settings fare on photos, set against these controls, is measured in
`bench/INTERACTIONS.md` and summarised in the README ("Do a set's pixels act together?"): read it
before taking a set's outline as a unit the model uses.
"""),
    ],
    "05_sparsity_and_road.ipynb": [
        md("""
# Is the explanation any good? Sparsity and ROAD against IG

**Sparsity** (the Gini index, as Quantus computes it) is high when few pixels carry the attribution.
It mostly follows the number of nonzero pixels, so we also compare at matched support.

**ROAD** removes the most relevant pixels first (MoRF), fills them in by noisy linear imputation (no
retraining), and re-classifies: a faithful map makes the class probability drop fast. LeRF removes the
least relevant first, where a faithful map keeps it high. **AOPC** sums that up as the mean drop of the
probability over the removal fractions: higher is better for MoRF, lower for LeRF.
"""),
        SETUP,
        code("""
from hsets_widgets.evaluation import gini, gini_at_support, support_size, road
ex = hs.Explainer("chelsea", segmenter="slic", n_sets=3, nu=500)
e = ex.run()
maps = {"H-Sets": e.heatmap, "IG": ex.attribution().attribution.sum(0).cpu().numpy()}
s = min(support_size(m) for m in maps.values())
for name, m in maps.items():
    print(f"{name:7s} Gini {gini(m):.3f}, support {support_size(m)} px, Gini at matched support {gini_at_support(m, s):.3f}")
"""),
        code("""
curves = {name: road(ex.x, ex.classifier, m, percentages="fine") for name, m in maps.items()}
fig, ax = plt.subplots(1, 2, figsize=(10, 4))
for name, r in curves.items():
    for a, order in zip(ax, ("morf", "lerf")):
        c = r.curves[order]
        a.plot(c.percentages, c.probability, marker="o", label=f"{name} (AOPC {c.aopc():.3f})")
        a.set_title(order.upper()); a.set_xlabel("fraction removed"); a.set_ylabel("probability of the original class")
for a in ax: a.legend()
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(sorted(curves), [sorted(r.curves) for r in curves.values()][0])
"""),
        md("""
One photo says little. `hsets evaluate` runs the same protocol over a folder of images, resumably, and
writes `metrics.json` (with the AOPC of both orders and the insertion / deletion areas), one CSV per
image and the plots. `bench/faithfulness.py` compares methods image by image on the shared photos with
bootstrap intervals; the README quotes its result, and `bench/FAITHFULNESS.md` holds every variant it
measured, including the ones that lost.
"""),
    ],
    "06_your_own_model.ipynb": [
        md("""
# Your own model, your own image, official SAM

Any `nn.Module` that returns class scores works. Give its normalisation (what it expects instead of a
[0, 1] image) and input size; the engine does the rest.
"""),
        SETUP,
        code("""
import torch, torchvision
net = torchvision.models.resnet18(weights=None)            # online: weights="DEFAULT"
torch.save(net.state_dict(), "my_resnet18.pt")             # a local checkpoint stands in for yours
clf = hs.load_classifier("resnet18", checkpoint="my_resnet18.pt")
print(clf.name, clf.input_size, len(clf.class_names), "classes")
"""),
        md("""
With internet access, torchvision's weights API downloads real weights: `hs.load_classifier("resnet50")`.
Offline it fails with a message that says so and how to pass a checkpoint instead:
"""),
        code("""
try:
    hs.load_classifier("resnet50")
    print("downloaded resnet50 weights")
except hs.ModelError as err:
    print("offline:", str(err)[:120], "...")
"""),
        md("A module of your own, with its own preprocessing:"),
        code("""
from hsets_widgets.models import Normalize
tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                           torch.nn.Flatten(), torch.nn.Linear(8, 3))
mine = hs.wrap_module(tiny, normalize=Normalize([0.5] * 3, [0.5] * 3), input_size=64,
                      class_names=["cat", "dog", "fish"])
e = hs.explain("coffee", mine, segmenter="slic", n_sets=2, nu=16, n_steps=8)
print(e.class_name, [len(s) for s in e.sets])
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(e.heatmap.shape)
"""),
        md("""
## Images

`load_image` takes a path, a PIL image, a NumPy array or a tensor; grayscale and RGBA are converted with a
warning, anything unusable gets an error that says what is wrong:
"""),
        code("""
try:
    hs.load_image(np.full((32, 32, 3), np.nan, np.float32))
except hs.ImageError as err:
    print(err)
"""),
        md("""
## Official Segment Anything checkpoints

Download `sam_vit_b_01ec64.pth` (or vit_l / vit_h) from the segment-anything release page, then either
pass it explicitly or set `HSETS_SAM_CHECKPOINT` so `segmenter="auto"` picks it:

```python
from hsets_widgets.segmentation import get_segmenter
seg = get_segmenter("sam", checkpoint="sam_vit_b_01ec64.pth", points_per_side=16)
e = hs.explain("photo.jpg", segmenter=seg)
```
"""),
        code("""
import os
from hsets_widgets.segmentation import get_segmenter
ckpt = os.environ.get("HSETS_SAM_CHECKPOINT")
if ckpt:
    seg = get_segmenter("sam", checkpoint=ckpt)
else:
    seg = get_segmenter("slic")
    print("no official checkpoint configured; using", seg)
"""),
    ],
}


def main(only=()):
    """Write every notebook, or those whose names start with one of ``only``."""
    for name, cells in NOTEBOOKS.items():
        if only and not name.startswith(tuple(only)):
            continue
        nb = nbf.v4.new_notebook()
        nb.cells = cells
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbf.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
