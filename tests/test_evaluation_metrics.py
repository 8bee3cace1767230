"""Sparsity, ROAD imputation and ROAD curves on small images and real torch models."""
import numpy as np
import pytest
import torch
from torch import nn

from hsets_widgets import (
    AttributionShapeError,
    attribute,
    gini,
    gini_at_support,
    gini_within_top,
    imputation_system,
    keep_top,
    noisy_linear_impute,
    relevance_order,
    removal_mask,
    road,
    support_size,
)
from hsets_widgets.metrics.road import NEIGHBOUR_WEIGHTS, QUANTUS_PERCENTAGES, resolve_percentages
from hsets_widgets.model.models import wrap_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- sparsity ----------------------------------------------------------------------------
def quantus_gini(a):
    """The formula as Quantus writes it, for comparison."""
    a = np.abs(a) / np.max(np.abs(a))
    a = np.sort(np.asarray(a, dtype=np.float64).ravel() + 1e-7)
    n = a.size
    return np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * np.sum(a))


def test_gini_one_hot_is_about_one_and_constant_is_zero():
    one = np.zeros((32, 32))
    one[5, 7] = 3.0
    assert gini(one) == pytest.approx((1024 - 1) / 1024, abs=2e-4)  # 1e-7 offsets cost ~1e-4
    assert gini(one) == pytest.approx(quantus_gini(one), rel=1e-12)
    assert gini(np.full((32, 32), 0.25)) == pytest.approx(0.0, abs=1e-12)
    assert gini(np.zeros((8, 8))) == pytest.approx(0.0, abs=1e-12)


def test_gini_matches_quantus_formula_on_signed_maps():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 30)) ** 3
    assert gini(a) == pytest.approx(quantus_gini(a), rel=1e-12)
    c = rng.standard_normal((3, 20, 30))
    assert gini(c) == pytest.approx(quantus_gini(c.sum(0)), rel=1e-12)
    assert gini(torch.from_numpy(c)) == pytest.approx(gini(c))
    assert gini(c, channels="abs_sum") == pytest.approx(quantus_gini(np.abs(c).sum(0)))


def test_binary_map_gini_is_one_minus_support_fraction():
    a = np.zeros(50176)
    a[:2000] = 1.0
    assert gini(a.reshape(224, 224)) == pytest.approx((50176 - 2000) / 50176, abs=1e-5)


def test_support_and_matched_support():
    a = np.zeros((10, 10))
    a[0, :5] = [5, 4, 3, 2, 1]
    assert support_size(a) == 5
    rng = np.random.default_rng(1)
    dense = rng.random((10, 10)) + 0.1
    kept = keep_top(dense, 5)
    assert (kept != 0).sum() == 5
    assert set(np.flatnonzero(kept)) == set(np.argsort(-dense.ravel())[:5])
    # matched support removes the support effect: a constant top-5 map and a 5-pixel map agree
    flat5 = np.zeros((10, 10))
    flat5.ravel()[:5] = 1.0
    assert gini_at_support(np.ones((10, 10)), 5) == pytest.approx(gini(flat5))
    # unequal values inside the kept support are more concentrated than equal ones
    assert gini_at_support(dense, 5) >= gini(flat5) - 1e-12


def test_support_rtol_semantics():
    a = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    assert support_size(a, rtol=0.5) == 3  # 5, 4, 3 exceed 2.5


# ---- imputation --------------------------------------------------------------------------
def one_channel(values):
    return np.asarray(values, dtype=np.float64)[None]


def test_centre_pixel_is_weighted_mean_of_its_eight_neighbours():
    img = np.zeros((1, 3, 3))
    removed = np.zeros((3, 3), bool)
    removed[1, 1] = True
    img[0, 0, 0] = 1.0  # a diagonal neighbour
    assert noisy_linear_impute(img, removed, noise=0)[0, 1, 1] == pytest.approx(1 / 12)
    img[0, 0, 0], img[0, 0, 1] = 0.0, 1.0  # a direct neighbour
    assert noisy_linear_impute(img, removed, noise=0)[0, 1, 1] == pytest.approx(1 / 6)
    lin = one_channel(np.arange(9.0).reshape(3, 3))
    assert noisy_linear_impute(lin, removed, noise=0)[0, 1, 1] == pytest.approx(4.0)


def test_border_pixels_drop_outside_neighbours_and_renormalise():
    rng = np.random.default_rng(0)
    v = rng.random((4, 4))
    removed = np.zeros((4, 4), bool)
    removed[0, 0] = True
    out = noisy_linear_impute(v[None], removed, noise=0)[0]
    assert out[0, 0] == pytest.approx((2 * v[0, 1] + 2 * v[1, 0] + v[1, 1]) / 5)
    v5 = rng.random((5, 5))
    removed5 = np.zeros((5, 5), bool)
    removed5[0, 2] = True
    out5 = noisy_linear_impute(v5[None], removed5, noise=0)[0]
    expect = (2 * (v5[0, 1] + v5[0, 3] + v5[1, 2]) + v5[1, 1] + v5[1, 3]) / 8
    assert out5[0, 2] == pytest.approx(expect)


def test_adjacent_removed_pixels_are_solved_jointly():
    img = np.zeros((1, 4, 4))
    img[0, 0, 0] = 12.0
    removed = np.zeros((4, 4), bool)
    removed[1, 1] = removed[1, 2] = True
    # a = 12/12 + b/6, b = a/6  ->  a = 36/35, b = 6/35
    out = noisy_linear_impute(img, removed, noise=0)[0]
    assert out[1, 1] == pytest.approx(36 / 35)
    assert out[1, 2] == pytest.approx(6 / 35)


def test_imputed_pixels_satisfy_the_mean_equation_everywhere():
    rng = np.random.default_rng(3)
    img = rng.random((3, 6, 7))
    removed = rng.random((6, 7)) < 0.6
    removed[2, 3] = False  # keep at least one
    out = noisy_linear_impute(img, removed, noise=0)
    for y, x in zip(*np.nonzero(removed)):
        num, den = np.zeros(3), 0.0
        for (dy, dx), w in NEIGHBOUR_WEIGHTS:
            if 0 <= y + dy < 6 and 0 <= x + dx < 7:
                num += w * out[:, y + dy, x + dx]
                den += w
        np.testing.assert_allclose(out[:, y, x], num / den, atol=1e-10)
    np.testing.assert_array_equal(out[:, ~removed], img[:, ~removed])
    A, b, unknown = imputation_system(img, removed)
    assert abs(A - A.T).max() < 1e-15 and A.shape[0] == removed.sum() == unknown.size


def test_noise_is_seeded_and_only_on_removed_pixels():
    img = np.full((3, 8, 8), 0.5)
    removed = np.zeros((8, 8), bool)
    removed[2:6, 2:6] = True
    a = noisy_linear_impute(img, removed, noise=0.01, rng=7)
    b = noisy_linear_impute(img, removed, noise=0.01, rng=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, ~removed], 0.5)
    dev = a[:, removed] - 0.5
    assert 0.004 < dev.std() < 0.02 and np.abs(dev).max() > 0
    t = noisy_linear_impute(torch.from_numpy(img).float(), removed, noise=0.0)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32


def test_removing_nothing_changes_nothing():
    img = np.random.default_rng(0).random((3, 5, 5))
    np.testing.assert_array_equal(noisy_linear_impute(img, np.zeros((5, 5), bool)), img)
    assert not removal_mask(relevance_order(np.ones((5, 5))), 0.0, (5, 5)).any()


def test_removal_masks_morf_lerf_and_counts():
    a = np.arange(16.0).reshape(4, 4)
    order = relevance_order(a, tie_break=0.0)
    assert order[0] == 15 and order[-1] == 0
    morf = removal_mask(order, 0.25, (4, 4), "morf")
    lerf = removal_mask(order, 0.25, (4, 4), "lerf")
    assert set(np.flatnonzero(morf)) == {12, 13, 14, 15}
    assert set(np.flatnonzero(lerf)) == {0, 1, 2, 3}
    assert removal_mask(np.arange(100), 0.29, (10, 10)).sum() == 29  # no float round-down
    # ties are broken by the seeded tie-breaker
    o1, o2 = relevance_order(np.ones((4, 4)), seed=1), relevance_order(np.ones((4, 4)), seed=1)
    np.testing.assert_array_equal(o1, o2)
    assert not np.array_equal(o1, relevance_order(np.ones((4, 4)), seed=2))


def test_percentage_sets():
    assert resolve_percentages("road").tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]
    assert len(QUANTUS_PERCENTAGES) == 50 and QUANTUS_PERCENTAGES[0] == 0.01
    assert QUANTUS_PERCENTAGES[-1] == 0.99
    with pytest.raises(ValueError, match="fractions"):
        resolve_percentages([0.5, 1.0])
    with pytest.raises(ValueError, match="percentage set"):
        resolve_percentages("nope")


# ---- ROAD on real models -----------------------------------------------------------------
def block_model(size=16, block=(slice(2, 6), slice(2, 6))):
    """A real linear classifier that looks only at a 4x4 block: class 0 iff it is bright."""
    lin = nn.Linear(3 * size * size, 2)
    with torch.no_grad():
        w = torch.zeros(3, size, size)
        w[:, block[0], block[1]] = 1.0
        w /= w.sum()
        lin.weight.zero_()
        lin.weight[0] = 20 * w.flatten()
        lin.bias.copy_(torch.tensor([-10.0, 0.0]))
    return wrap_module(nn.Sequential(nn.Flatten(), lin), normalize=nn.Identity(), input_size=size,
                       class_names=["bright", "dark"], name="block")


def block_image(size=16):
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.rand(3, size, size, generator=g)
    x[:, 2:6, 2:6] = 1.0
    return x


def test_oracle_map_drops_faster_than_random_under_morf():
    clf, x = block_model(), block_image()
    assert clf(x[None]).argmax().item() == 0
    oracle = torch.zeros(16, 16)
    oracle[2:6, 2:6] = 1.0
    pct = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]
    r_oracle = road(x, clf, oracle, pct, seed=0)
    aucs = [road(x, clf, np.random.default_rng(s).random((16, 16)), pct, seed=s).morf.auc()
            for s in range(5)]
    assert r_oracle.morf.accuracy[0] == 1.0          # 0% removed: prediction kept
    assert r_oracle.morf.accuracy[1:].max() == 0.0   # the block is gone at 10%
    assert r_oracle.morf.auc() < min(aucs)
    # LeRF of the oracle keeps the block until the very end
    assert r_oracle.lerf.accuracy[:5].min() == 1.0
    assert r_oracle.morf.probability[0] == pytest.approx(r_oracle.original_probability, abs=1e-6)
    d = r_oracle.to_dict()
    assert d["curves"]["morf"]["percentages"] == pct and "auc_accuracy" in d["curves"]["morf"]


def test_road_on_a_resnet_is_batched_seeded_and_scores_the_original_class():
    torch.manual_seed(0)
    from torchvision.models import resnet18

    clf = wrap_module(resnet18(num_classes=10), input_size=32, class_names=[str(i) for i in range(10)])
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = attribute(x, clf, method="gradient")
    assert a.shape == (3, 32, 32)
    r1 = road(x, clf, a, [0.0, 0.2, 0.6], batch_size=2, seed=3, label=4)
    r2 = road(x, clf, a, [0.0, 0.2, 0.6], batch_size=5, seed=3, label=4)
    np.testing.assert_allclose(r1.morf.probability, r2.morf.probability, rtol=1e-5)
    with torch.no_grad():
        p0 = clf(x[None]).softmax(-1)[0]
    assert r1.target == int(p0.argmax())
    assert r1.morf.probability[0] == pytest.approx(float(p0.max()), rel=1e-5)
    assert r1.morf.label_accuracy is not None and r1.morf.label_accuracy.shape == (3,)
    # the normalised area is the trapezoid mean height of the accuracy curve, by hand
    acc, pct = r1.morf.accuracy, np.array([0.0, 0.2, 0.6])
    by_hand = ((pct[1] - pct[0]) * (acc[0] + acc[1]) / 2 + (pct[2] - pct[1]) * (acc[1] + acc[2]) / 2) / pct[2]
    assert r1.morf.auc(normalized=True) == pytest.approx(by_hand)


def test_wrong_shape_maps_give_a_clear_error():
    clf, x = block_model(), block_image()
    with pytest.raises(AttributionShapeError, match=r"shape \(5, 5\).*16x16"):
        attribute(x, clf, method=lambda img, c, t: torch.zeros(5, 5))
    with pytest.raises(AttributionShapeError, match=r"expected \(16, 16\) or \(3, 16, 16\)"):
        attribute(x, clf, method=lambda img, c, t: np.zeros((2, 16, 16)))
    with pytest.raises(AttributionShapeError):
        road(x, clf, np.zeros((8, 8)), [0.1])
    with pytest.raises(ValueError, match="NaN"):
        attribute(x, clf, method=lambda img, c, t: np.full((16, 16), np.nan))


def test_builtin_baselines_are_seeded_and_shaped():
    clf, x = block_model(), block_image()
    r1 = attribute(x, clf, method="random", seed=1)
    assert r1.shape == (16, 16)
    np.testing.assert_array_equal(r1, attribute(x, clf, method="random", seed=1))
    s1 = attribute(x, clf, method="smoothgrad:n_samples=4,sigma=0.1", seed=2)
    np.testing.assert_allclose(s1, attribute(x, clf, method="smoothgrad:n_samples=4,sigma=0.1", seed=2))
    g = attribute(x, clf, method="gradient")
    assert np.abs(g[:, 8:, 8:]).max() == 0 and np.abs(g[:, 2:6, 2:6]).min() > 0
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(x, clf, method="saliency")


def test_gini_within_top_ignores_the_zeros():
    a = np.zeros((10, 10))
    a.ravel()[:4] = [1.0, 1.0, 1.0, 1.0]
    assert gini_within_top(a, 4) == pytest.approx(0.0, abs=1e-9)
    b = np.zeros((10, 10))
    b.ravel()[:4] = [0.0001, 0.0001, 0.0001, 1.0]
    assert gini_within_top(b, 4) == pytest.approx(gini(np.array([[0.0001, 0.0001, 0.0001, 1.0]])))
    assert gini_within_top(b, 4) > 0.7
    # the matched-support Gini of both is dominated by the 96 zeros
    assert gini_at_support(a, 4) == pytest.approx(0.96, abs=1e-5)


# ---- AOPC, insertion / deletion, paired statistics ---------------------------------------
def test_aopc_is_the_mean_drop_from_the_unchanged_image():
    clf, x = block_model(), block_image()
    oracle = torch.zeros(16, 16)
    oracle[2:6, 2:6] = 1.0
    pct = [0.05, 0.1, 0.3]
    r = road(x, clf, oracle, pct, seed=0)
    p0 = r.original_probability
    assert r.morf.aopc() == pytest.approx(float(np.mean(p0 - r.morf.probability)), abs=1e-12)
    assert r.morf.aopc("accuracy") == pytest.approx(float(np.mean(1 - r.morf.accuracy)), abs=1e-12)
    rnd = road(x, clf, np.random.default_rng(1).random((16, 16)), pct, seed=0)
    assert r.morf.aopc() > rnd.morf.aopc() + 0.3   # the block goes first: the class is lost at once
    assert r.lerf.aopc() < rnd.lerf.aopc()         # and it stays until the end of LeRF
    with pytest.raises(ValueError, match="true label"):
        r.morf.aopc("label_accuracy")
    assert road(x, clf, oracle, pct, label=0).morf.aopc("label_accuracy") == pytest.approx(
        float(np.mean(1 - road(x, clf, oracle, pct, label=0).morf.label_accuracy)))
    assert "fine" in __import__("hsets_widgets.metrics.road", fromlist=["x"]).PERCENTAGE_SETS
    assert resolve_percentages("fine").tolist() == [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9]


def test_insertion_and_deletion_follow_the_ranking():
    from hsets_widgets.metrics.insertion import insertion_deletion

    clf, x = block_model(), block_image()
    oracle = torch.zeros(16, 16)
    oracle[2:6, 2:6] = 1.0
    anti = 1.0 - oracle
    good = insertion_deletion(x, clf, oracle, [0.1, 0.3, 0.6], seed=0)
    bad = insertion_deletion(x, clf, anti, [0.1, 0.3, 0.6], seed=0)
    for res in (good, bad):
        assert res.deletion.fractions.tolist() == [0.0, 0.1, 0.3, 0.6, 1.0]
        assert res.deletion.probability[0] == pytest.approx(res.original_probability, abs=1e-6)
        assert res.insertion.probability[-1] == pytest.approx(res.original_probability, abs=1e-6)
    # deleting the block first kills the class at 10%; inserting it first restores it at 10%
    assert good.deletion.accuracy[1] == 0.0 and good.insertion.accuracy[1] == 1.0
    assert good.deletion.auc() < bad.deletion.auc() and good.insertion.auc() > bad.insertion.auc()
    same = insertion_deletion(x, clf, oracle, [0.1, 0.3, 0.6], seed=0)
    assert np.array_equal(same.insertion.probability, good.insertion.probability)


def test_paired_difference_interval():
    from hsets_widgets.metrics.statistics import bootstrap_mean, paired_difference

    rng = np.random.default_rng(0)
    b = rng.normal(0.5, 0.2, 200)
    a = b + 0.05 + rng.normal(0, 0.02, 200)    # a beats b on every image by about 0.05
    d = paired_difference(a, b)
    assert d.low < 0.05 < d.high and d.excludes_zero and d.n == 200 and d.wins > 180
    same = paired_difference(b + rng.normal(0, 0.05, 200), b)
    assert not same.excludes_zero
    assert paired_difference(a, b, seed=3) == paired_difference(a, b, seed=3)
    a[0] = np.nan
    assert paired_difference(a, b).n == 199
    mean, lo, hi = bootstrap_mean(b)
    assert lo < mean < hi and hi - lo < 0.1
    with pytest.raises(ValueError, match="same images"):
        paired_difference(a, b[:5])


def test_a_region_s_contribution_on_a_planted_block():
    """The block model looks only at its 4x4 block: removing the block (imputed from the dark
    pixels around it) costs 'bright' its probability, removing a same-size region elsewhere costs
    nothing; a map on the block gives the block all its positive mass and the area its share."""
    from hsets_widgets.metrics.regions import positive_share, rectangle, region_effect

    clf, x = block_model(), block_image()
    oracle = np.zeros((16, 16))
    oracle[2:6, 2:6] = 1.0
    block = rectangle((16, 16), 5, 5, 2, 2)                   # corners in either order
    assert block.sum() == 16 and block[2:6, 2:6].all()
    on = region_effect(x, clf, region=block, maps={"oracle": oracle, "flat": np.ones((3, 16, 16))})
    off = region_effect(x, clf, region=rectangle((16, 16), 10, 10, 13, 13), maps={"oracle": oracle})
    assert on.target == off.target == 0
    assert on.before == pytest.approx(off.before) and on.before > 0.99
    assert on.after < 0.01 and on.drop > 0.98
    assert off.drop == pytest.approx(0.0, abs=1e-3)
    assert on.shares["oracle"] == 1.0 and off.shares["oracle"] == 0.0
    assert on.shares["flat"] == pytest.approx(on.area) and on.area == pytest.approx(16 / 256)
    assert np.isnan(positive_share(-oracle, block))           # no positive mass: no share
    assert rectangle((16, 16), -3, -3, 40, 1).sum() == 16 * 2  # clipped to the image
    for bad, words in ((np.zeros((16, 16), bool), "empty"), (np.ones((16, 16), bool), "whole image"),
                       (np.ones((8, 8), bool), "one boolean per pixel")):
        with pytest.raises(ValueError, match=words):
            region_effect(x, clf, region=bad)


def test_the_head_of_morf_compares_a_sparse_map_where_it_still_ranks_pixels():
    """Over the first 5% and 10% removed, MoRF is decided by the pixels a sparse map still ranks
    (here the class's block, 16 of 256 pixels); the head AOPC is the mean drop over just those
    percentages, and a method's record has one key per cut on the run's grid."""
    from hsets_widgets.runs.runner import method_record

    clf, x = block_model(), block_image()
    sparse = torch.zeros(16, 16)
    sparse[2:6, 2:6] = 1.0
    dense = sparse + 0.01 * torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    pct = [0.01, 0.02, 0.05, 0.1, 0.3]
    a, b = road(x, clf, sparse, pct, seed=0), road(x, clf, dense, pct, seed=0)
    drops = a.original_probability - a.morf.probability
    assert a.morf.aopc(up_to=0.05) == pytest.approx(float(np.mean(drops[:3])), abs=1e-12)
    assert a.morf.aopc(up_to=0.1) == pytest.approx(float(np.mean(drops[:4])), abs=1e-12)
    assert a.morf.aopc(up_to=0.05) == pytest.approx(b.morf.aopc(up_to=0.05), abs=0.05)
    with pytest.raises(ValueError, match="no percentage at or below 0.005"):
        a.morf.aopc(up_to=0.005)
    rec = method_record(sparse.numpy(), a, 0.0, 0.0)
    assert rec["morf_aopc_first5"] == a.morf.aopc(up_to=0.05) and "morf_aopc_first10" in rec
    assert "morf_aopc_first15" not in rec            # no 15% on this grid
