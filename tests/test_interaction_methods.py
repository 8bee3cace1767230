"""The interaction methods H-Sets is compared with: Archipelago, MoXI, Integrated Hessians, CASO/CAFO,
each checked against what is known about it (published results, exact identities, dense references)."""
import numpy as np
import pytest
import torch
from torch import nn

from hsets_widgets.hsets.integrated_gradients import integrated_gradients, make_baseline
from hsets_widgets.methods.archipelago import arch_detect, archipelago, merge_pairs
from hsets_widgets.methods.caso import caso
from hsets_widgets.methods.integrated_hessians import integrated_hessians
from hsets_widgets.methods.masking import compose, segment_index
from hsets_widgets.methods.moxi import grid_labels, moxi
from hsets_widgets.methods.registry import attribute_sets
from hsets_widgets.model.models import wrap_module
from hsets_widgets.model.planted import synthetic_function
from hsets_widgets.model.scores import ScoreFn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(size=12, dtype=torch.float64, act=nn.Softplus):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act(), nn.Conv2d(4, 4, 3, padding=1, stride=2), act(),
                        nn.Flatten(), nn.Linear(4 * (size // 2) ** 2, 5)).to(dtype)
    return wrap_module(net, input_size=size, name="tiny")


def _auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


# ---- Archipelago ------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_archdetect_finds_the_planted_pairs_of_f1_to_f4_as_published(k):
    """Tsang et al. (2020) report a pairwise AUC of 1.0 for ArchDetect on each of F1-F4 (40 inputs)."""
    f, pairs = synthetic_function(k, 40)
    det = arch_detect(lambda c: f(torch.where(torch.as_tensor(c), 1.0, -1.0).double()).numpy(), 40)
    iu = np.triu_indices(40, 1)
    planted = np.array([(i, j) in pairs for i, j in zip(*iu)])
    assert _auc(det.strengths[iu], planted) == 1.0
    assert det.n_forward == 2 * (1 + 40 + 40 * 39 // 2)
    assert np.allclose(det.strengths, det.strengths.T) and not det.strengths.diagonal().any()


def test_merging_joins_overlapping_pairs_in_order_of_their_first_pair():
    assert merge_pairs([(4, 5), (0, 1), (2, 3), (1, 2), (7, 8)]) == [(4, 5), (0, 1, 2, 3), (7, 8)]
    assert merge_pairs([]) == []


def test_archattribute_is_the_set_inserted_into_the_baseline_exactly():
    clf = _net()
    x = torch.rand(3, 12, 12, dtype=torch.float64)
    labels = grid_labels((12, 12), 3)
    r = archipelago(x, clf, 2, segmenter=labels, top_k=4)
    b = make_baseline(x, "model-zero", clf)
    f = ScoreFn(clf, 2)
    _, index = segment_index(labels)
    for s, value in zip(r.sets, r.set_values):
        keep = torch.zeros(1, 9, dtype=torch.bool)
        keep[0, list(s)] = True
        inserted = compose(x, b, torch.as_tensor(index), keep)
        with torch.no_grad():
            want = float(f(inserted)[0] - f(b.unsqueeze(0))[0])
        assert value == pytest.approx(want, abs=1e-12)
    assert r.n_forward == 2 * (1 + 9 + 36) + len(r.sets)
    # the authors' map: only positive sets of more than one superpixel, each with its value
    heat = r.heatmap("sets")
    painted = {v for s, v in r.explanation() if len(s) > 1 and v > 0}
    assert set(np.unique(heat)) <= painted | {0.0}
    assert np.count_nonzero(r.heatmap("all")) >= np.count_nonzero(heat)


# ---- MoXI -------------------------------------------------------------------------------------
def test_moxi_first_patch_is_the_best_single_patch_and_its_order_reproduces_its_curve():
    clf = _net()
    x = torch.rand(3, 12, 12, dtype=torch.float64)
    r = moxi(x, clf, 1, grid=3, max_steps=None, score="logit")
    f, b = ScoreFn(clf, 1), make_baseline(x, "model-zero", clf)
    idx = torch.as_tensor(r.labels)
    with torch.no_grad():
        singles = f(compose(x, b, idx, torch.eye(9, dtype=torch.bool))).numpy()
        assert r.order[0] == int(np.argmax(singles))
        prefixes = torch.zeros(10, 9, dtype=torch.bool)
        for t, p in enumerate(r.order):
            prefixes[t + 1:, p] = True
        np.testing.assert_allclose(r.curve, f(compose(x, b, idx, prefixes)).numpy(), atol=1e-12)
    assert sorted(r.order.tolist()) == list(range(9))
    assert r.n_forward == 2 + 9 * 10 // 2                 # N (N + 1) / 2 greedy passes and the two ends
    assert r.curve[-1] == pytest.approx(r.full_score)
    # fewer greedy steps: the same first steps, then the rest by their last gains, cheaper
    short = moxi(x, clf, 1, grid=3, max_steps=2, score="logit")
    assert short.order[:2].tolist() == r.order[:2].tolist() and short.n_forward < r.n_forward
    heat = r.heatmap()
    assert heat[r.labels == r.order[0]].min() == 9 and heat[r.labels == r.order[-1]].max() == 1


def test_log_odds_is_log_p_over_one_minus_p():
    clf = _net()
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        p = clf(x).softmax(-1)[:, 3]
        np.testing.assert_allclose(ScoreFn(clf, 3, "log_odds")(x), torch.log(p / (1 - p)), rtol=1e-10)


# ---- Integrated Hessians ----------------------------------------------------------------------
def test_integrated_hessians_rows_sum_to_ig_and_the_matrix_is_symmetric():
    clf = _net()
    x = torch.rand(3, 12, 12, dtype=torch.float64)
    labels = grid_labels((12, 12), 2)
    r = integrated_hessians(x, clf, 0, labels=labels, n_steps=64)
    np.testing.assert_allclose(r.matrix, r.matrix.T, atol=1e-12)
    ig = integrated_gradients(x, clf, 0, n_steps=256, rule="midpoint").attribution.numpy().sum(0)
    _, index = segment_index(labels)
    ig_segments = np.array([ig[index == k].sum() for k in range(4)])
    np.testing.assert_allclose(r.matrix.sum(1), ig_segments, rtol=2e-3, atol=2e-4 * np.abs(ig_segments).max())
    assert r.completeness_error < 1e-3
    row = integrated_hessians(x, clf, 0, pixel=30, n_steps=64)
    assert row.matrix.shape == (1, 144) and row.matrix.sum() == pytest.approx(ig.reshape(-1)[30], rel=2e-3, abs=1e-6)


def test_integrated_hessians_of_a_function_without_interaction_is_diagonal():
    class Additive(nn.Module):        # every pixel on its own: a sum of per-pixel smooth terms
        def forward(self, z):
            return torch.nn.functional.softplus(3 * z - 1).sum((1, 2, 3)).unsqueeze(1).repeat(1, 2)

    clf = wrap_module(Additive(), input_size=8, name="additive")
    x = torch.rand(3, 8, 8, dtype=torch.float64)
    r = integrated_hessians(x, clf, 0, labels=grid_labels((8, 8), 2), n_steps=16)
    off = r.matrix - np.diag(np.diag(r.matrix))
    assert np.abs(off).max() < 1e-12 < np.abs(np.diag(r.matrix)).max()


# ---- CASO / CAFO ------------------------------------------------------------------------------
def test_caso_never_lowers_its_objective_and_reaches_the_dense_maximiser():
    clf = _net(size=6)
    x = torch.rand(3, 6, 6, dtype=torch.float64)
    r = caso(x, clf, 0, n_iter=40, step=0.04)
    assert (np.diff(r.objective) >= 0).all() and r.objective[-1] > r.objective[0] == 0

    def loss(z):
        return -torch.log_softmax(clf(z.reshape(1, 3, 6, 6)), -1)[0, 0]
    h = torch.autograd.functional.hessian(loss, x.reshape(-1))
    g = torch.autograd.functional.jacobian(loss, x.reshape(-1))
    top = float(torch.linalg.eigvalsh(h).max())
    assert r.top_eigenvalue == pytest.approx(top, rel=0.2)       # power iteration, 10 steps
    want = torch.linalg.solve((20 + r.top_eigenvalue) * torch.eye(108, dtype=torch.float64) - h, g)
    np.testing.assert_allclose(r.delta.reshape(-1), want.numpy(), atol=1e-4 * float(want.abs().max()))


def test_cafo_is_caso_without_the_hessian_term():
    clf = _net(size=6)
    x = torch.rand(3, 6, 6, dtype=torch.float64)
    c = caso(x, clf, 0, second_order=False, n_iter=60)
    g = torch.autograd.functional.jacobian(
        lambda z: -torch.log_softmax(clf(z.reshape(1, 3, 6, 6)), -1)[0, 0], x.reshape(-1))
    np.testing.assert_allclose(c.delta.reshape(-1), (g / 20).numpy(), atol=1e-6 * float(g.abs().max()))
    assert c.n_hvp == 0 and c.top_eigenvalue == 0
    with pytest.raises(ValueError, match="l2 must be a finite number"):
        caso(x, clf, 0, l2=-1)
    with pytest.raises(ValueError, match="at least 2 superpixels"):
        archipelago(x, clf, 0, segmenter=np.zeros((6, 6), int))


# ---- as methods -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["archipelago:segmenter=slic,top_k=3", "moxi:grid=3,max_steps=2",
                                  "ih:n_steps=4", "caso:n_iter=2", "cafo:n_iter=2"])
def test_each_method_gives_a_map_and_the_set_methods_their_sets(spec):
    clf = _net(size=24, dtype=torch.float32, act=nn.ReLU)
    yy, xx = np.mgrid[0:24, 0:24] / 24
    x = torch.as_tensor(np.stack([yy, xx, ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1) * 0.8]), dtype=torch.float32)
    made = attribute_sets(x, clf, 1, method=spec)
    assert made.map.shape == (24, 24) and np.isfinite(made.map).all()
    if spec.startswith(("caso", "cafo")):
        assert made.sets == ()
        return
    assert made.sets and made.labels.shape == (24, 24)
    for s in made.sets:
        assert len(s.pixels) > 0 and s.pixels.max() < 24 * 24
        assert s.seed_yx[0] * 24 + s.seed_yx[1] in set(s.pixels.tolist())


@pytest.mark.parametrize("spec", ["archipelago:segmenter=slic,top_k=3", "moxi:grid=3,max_steps=2",
                                  "ih:n_steps=4", "caso:n_iter=2", "cafo:n_iter=2", "ig:n_steps=4"])
def test_each_method_reports_progress_and_stops_when_cancelled(spec):
    """What the Explorer and the CLI rely on: a long method says how far it is, and a cancel stops it."""
    from hsets_widgets.plumbing.progress import Cancelled, CancelToken

    clf = _net(size=24, dtype=torch.float32, act=nn.ReLU)
    yy, xx = np.mgrid[0:24, 0:24] / 24
    x = torch.as_tensor(np.stack([yy, xx, ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.1) * 0.8]), dtype=torch.float32)
    seen = []
    attribute_sets(x, clf, 1, method=spec, progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen and all(0 <= done <= total for _, done, total in seen)
    assert any(done == total for _, done, total in seen)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        attribute_sets(x, clf, 1, method=spec, cancel=token)


def test_hsets_explain_compare_draws_the_other_methods_and_tests_their_sets(tmp_path, photo48, small32):
    """``hsets explain --compare``: the other methods beside H-Sets and IG in compare.png, their sets
    tested against the same controls as H-Sets' in summary.json; an unknown method fails first."""
    import json

    from PIL import Image

    from hsets_widgets.cli.explain import explain_to_folder
    from hsets_widgets.cli.main import build_parser

    def args(*more):
        return build_parser().parse_args(["explain", "x", "--out", str(tmp_path / "o"), "--segmenter", "slic",
                                          "--n-steps", "4", "--nu", "6", "--n-sets", "1", "--quiet", *more])

    with pytest.raises(ValueError, match="unknown attribution method 'archipelag'"):
        explain_to_folder(photo48, small32, args("--compare", "archipelag"))
    assert not (tmp_path / "o").exists()
    explain_to_folder(photo48, small32, args("--interactions", "--compare",
                                             "ih:n_steps=4,cafo:n_iter=2"))
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    arch, cafo = summary["compared"]["ih:n_steps=4"], summary["compared"]["cafo:n_iter=2"]
    assert arch["n_sets"] >= 1 and arch["interactions"]["interaction_share"] is not None
    assert len(arch["sets"][0]["interactions"]["controls"]) == 4
    assert cafo["n_sets"] == 0 and "interactions" not in cafo and 0 < cafo["support_fraction"] <= 1
    with Image.open(tmp_path / "o" / "compare.png") as im:     # five panels: four on a row, one below
        assert im.size[0] > 2.5 * im.size[1] / 2


def test_hsets_evaluate_runs_the_interaction_methods_beside_hsets_and_tests_their_sets(tmp_path):
    """``hsets evaluate --methods hsets,ig,archipelago,moxi,ih,caso,cafo,random --interactions``, small:
    every method gets its faithfulness numbers, and the set-making ones their interaction test."""
    from PIL import Image

    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import read_results, run_evaluation

    d = tmp_path / "photos"
    d.mkdir()
    yy, xx = np.mgrid[0:24, 0:24]
    img = np.stack([yy / 24, xx / 24, ((yy - 12) ** 2 + (xx - 12) ** 2 < 40) * 0.8], -1)
    Image.fromarray((img * 255).astype(np.uint8)).save(d / "disc.png")
    clf = _net(size=24, dtype=torch.float32, act=nn.ReLU)
    methods = ["hsets:segmenter=slic,n_steps=4,nu=8,n_sets=2,n_samples=20", "ig:n_steps=8",
               "archipelago:segmenter=slic,top_k=6,paint=all", "moxi:grid=3,max_steps=3", "ih:n_steps=4",
               "caso:n_iter=2", "cafo:n_iter=2", "random"]
    run_evaluation(collect_images([d]), clf, tmp_path / "e", methods=methods, percentages=[0.2, 0.5],
                   interactions=True)
    got = next(iter(read_results(tmp_path / "e" / "results.jsonl").values()))["methods"]
    assert set(got) == set(methods)
    for spec in methods:
        assert 0 <= got[spec]["sparsity"] <= 1 and np.isfinite(got[spec]["morf_aopc"]), spec
    for spec in (methods[0], methods[3], methods[4]):       # H-Sets, MoXI, IH always make sets
        assert got[spec]["interaction_share"] is not None, spec
    for spec in (methods[1], methods[5], methods[6], methods[7]):
        assert got[spec].get("interaction_share") is None, spec


def test_a_flat_image_gets_slic_superpixels_not_quickshifts_hundred_and_more():
    # quickshift splits a flat 224 px image into 128 regions (16,514 forward passes in
    # Archipelago, 4x a photo); a photo keeps its quickshift superpixels
    from hsets_widgets.methods.archipelago import MAX_SUPERPIXELS, superpixels

    grey = torch.full((3, 224, 224), 0.5)
    with pytest.warns(RuntimeWarning, match="quickshift split the image into 128 superpixels"):
        labels = superpixels(grey)
    assert 2 <= len(np.unique(labels)) <= MAX_SUPERPIXELS
    mine = np.arange(224 * 224).reshape(224, 224) // 224      # a label map is used as given
    assert superpixels(grey, mine) is mine


# ---- CASO's iterations are checked --------------------------------------------------------------
def test_the_engine_refuses_caso_iterations_below_one(image8, tiny64):
    from hsets_widgets.methods.caso import caso

    for key in ("n_iter", "power_iterations"):
        with pytest.raises(ValueError, match=key):
            caso(image8, tiny64, 0, **{key: -1})
