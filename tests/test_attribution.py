"""Integrated Gradients and IDG on a tiny float64 network."""
import numpy as np
import pytest
import torch

from hsets_widgets.hsets.games import all_coalitions
from hsets_widgets.hsets.idg import estimate_value, idg_direct, member_terms, running_estimate, subset_scores
from hsets_widgets.hsets.integrated_gradients import integrated_gradients, make_baseline, path_points
from hsets_widgets.model.scores import ScoreFn


@pytest.mark.parametrize("rule", ["left", "right", "midpoint", "trapezoid", "gauss-legendre", "inclusive"])
def test_path_weights_sum_to_one(rule):
    a, w = path_points(10, rule)
    assert np.isclose(w.sum(), 1.0) and a.min() >= 0 and a.max() <= 1


def test_ig_completeness_converges(tiny64, image8):
    errs = {}
    for n in (4, 64, 1024):
        r = integrated_gradients(image8, tiny64, target=3, n_steps=n, rule="midpoint")
        errs[n] = r.relative_completeness_error
    assert errs[1024] < errs[4] and errs[1024] < 0.01
    torch.testing.assert_close(r.attribution, (image8 - r.baseline) * r.path_gradient)


def test_ig_gauss_legendre_is_exact_on_a_smooth_network(tiny64, image8):
    from hsets_widgets.hsets.curvature import curvature

    with curvature("softplus", beta=3.0):
        gl = integrated_gradients(image8, tiny64, target=3, n_steps=24, rule="gauss-legendre")
    assert gl.relative_completeness_error < 1e-8


def test_baselines(tiny64, image8):
    assert torch.equal(make_baseline(image8, "zeros"), torch.zeros_like(image8))
    mz = make_baseline(image8, "model-zero", tiny64)  # normalize is 2x - 1 -> zero input at 0.5
    torch.testing.assert_close(mz, torch.full_like(image8, 0.5))
    blur = make_baseline(image8, "blur", blur_sigma=1.0)
    assert blur.shape == image8.shape and blur.std() < image8.std()
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(image8, "noise")


def test_idg_identity_matches_direct_path_integration(tiny64, image8):
    """IDG(S) from the path-averaged gradient equals integrating the directional derivative."""
    ig = integrated_gradients(image8, tiny64, target=2, n_steps=12, rule="gauss-legendre")
    f = ScoreFn(tiny64, 2)
    alphas, weights = path_points(12, "gauss-legendre")
    members = [3, 10, 11, 40, 63]
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, image8 - ig.baseline)
    fast = subset_scores(terms, np.ones((1, 5), bool))[0]
    mask = torch.zeros(3, 64, dtype=torch.float64)
    mask[:, members] = 1
    direct = idg_direct(image8, f, ig.baseline, mask.view(3, 8, 8), alphas, weights)
    assert fast == pytest.approx(direct, rel=1e-9)


def test_abs_gradient_score_is_the_authors_norm(tiny64, image8):
    ig = integrated_gradients(image8, tiny64, target=0, n_steps=8, rule="inclusive")
    members = [0, 5, 9]
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, image8 - ig.baseline)
    d = (image8 - ig.baseline).reshape(3, -1)[:, members]
    a_hat = d / d.norm()
    expected = (a_hat * ig.abs_path_gradient.reshape(3, -1)[:, members]).norm()
    assert subset_scores(terms, np.ones((1, 3), bool), "abs-gradient")[0] == pytest.approx(float(expected))


def _terms(n, seed=0):
    from hsets_widgets.hsets.idg import MemberTerms

    rng = np.random.default_rng(seed)
    return MemberTerms(rng.normal(size=n), rng.uniform(0.1, 1.0, n), rng.uniform(0.0, 1.0, n))


def test_exact_value_for_small_sets_is_the_mean_over_all_coalitions():
    t = _terms(6)
    v = estimate_value(t, exact_limit=12)
    subsets = all_coalitions(6)
    assert v.exact and v.n_samples == 63
    assert v.value == pytest.approx(np.abs(subset_scores(t, subsets)).mean())
    assert v.log2_total == pytest.approx(np.log2(np.abs(subset_scores(t, subsets)).sum()))


@pytest.mark.parametrize("sampler", ["bernoulli", "stratified"])
def test_sampled_value_converges_to_exact(sampler):
    t = _terms(10, seed=3)
    exact = estimate_value(t, exact_limit=12).value
    ses = []
    for n in (200, 20000):
        v = estimate_value(t, sampler=sampler, n_samples=n, exact_limit=0, seed=1)
        ses.append(v.stderr)
        assert abs(v.value - exact) < 4 * v.stderr
    assert ses[1] < ses[0] / 5  # the standard error shrinks like 1 / sqrt(samples)


def test_sampling_is_seeded():
    t = _terms(40)
    a = estimate_value(t, n_samples=100, exact_limit=0, seed=5)
    b = estimate_value(t, n_samples=100, exact_limit=0, seed=5)
    c = estimate_value(t, n_samples=100, exact_limit=0, seed=6)
    assert a.value == b.value and a.value != c.value


def test_sample_sum_is_the_authors_value():
    t = _terms(30)
    v = estimate_value(t, value_kind="sample-sum", n_samples=30, exact_limit=0, seed=0)
    assert v.kind == "sample-sum" and v.value == pytest.approx(v.samples.sum()) and len(v.samples) == 30


def test_large_sets_value_is_finite():
    v = estimate_value(_terms(2000), n_samples=500, exact_limit=0)
    assert np.isfinite(v.value) and np.isfinite(v.log2_total) and v.log2_total > 1900


def test_running_estimate_ends_at_the_mean():
    d = np.random.default_rng(0).uniform(size=50)
    mean, se = running_estimate(d)
    assert mean[-1] == pytest.approx(d.mean()) and se[-1] == pytest.approx(d.std(ddof=1) / np.sqrt(50))


def test_adaptive_rule_puts_its_nodes_where_the_score_changes():
    """On a score that jumps near alpha = 0.03 the adaptive partition is fine there, its
    weights sum to 1, and it integrates the path far better than the midpoint rule."""
    from hsets_widgets.hsets.integrated_gradients import adaptive_path_points

    x = torch.ones(3, 4, 4, dtype=torch.float64)
    b = torch.zeros_like(x)

    def f(z):  # a steep sigmoid of the mean brightness: almost all of f(1) - f(0) before 0.06
        return torch.sigmoid(200 * (z.mean((1, 2, 3)) - 0.03))

    def dfda(a):
        s = 1 / (1 + np.exp(-200 * (a - 0.03)))
        return 200 * s * (1 - s)

    exact = float(f(x[None]) - f(b[None]))
    a, w = adaptive_path_points(x, f, b, 16)
    assert np.isclose(w.sum(), 1.0) and np.all(np.diff(a) > 0) and a.min() > 0 and a.max() < 1
    assert (a < 0.06).sum() >= 8       # half of the nodes in the 6% of the path that matters
    adaptive_err = abs(float((w * dfda(a)).sum()) - exact)
    am, wm = path_points(16, "midpoint")
    midpoint_err = abs(float((wm * dfda(am)).sum()) - exact)
    assert adaptive_err < 0.05 * abs(exact) < midpoint_err


def test_adaptive_ig_converges_to_ig_of_the_same_path(tiny64, image8):
    """Where the score changes evenly along the path the adaptive nodes are no better than
    equal ones, but they converge to the same integral."""
    fine = integrated_gradients(image8, tiny64, target=1, n_steps=2048, rule="midpoint")
    errs = [integrated_gradients(image8, tiny64, target=1, n_steps=n, rule="adaptive").relative_completeness_error
            for n in (8, 512)]
    assert errs[1] < 0.01 and errs[1] < errs[0]
    ad = integrated_gradients(image8, tiny64, target=1, n_steps=512, rule="adaptive")
    assert ad.rule == "adaptive" and ad.n_steps == 512
    cos = torch.nn.functional.cosine_similarity(ad.attribution.flatten(), fine.attribution.flatten(), dim=0)
    assert cos > 0.99
    with pytest.raises(ValueError, match="adaptive"):
        path_points(8, "adaptive")


def _exact_banzhaf(terms, kind="idg"):
    """phi_i = 2^-(n-1) sum over T in N minus i of d(T + i) - d(T), by enumeration."""
    n = len(terms.ig)
    subsets = np.vstack([np.zeros((1, n), bool), all_coalitions(n)])
    d = np.abs(subset_scores(terms, subsets, kind))
    index = {tuple(row): k for k, row in enumerate(subsets)}
    phi = np.zeros(n)
    for row, dv in zip(subsets, d):
        for i in np.flatnonzero(~row):
            with_i = row.copy()
            with_i[i] = True
            phi[i] += d[index[tuple(with_i)]] - dv
    return phi / 2 ** (n - 1)


def test_banzhaf_values_exact_and_sampled(tiny64, image8):
    """The value's Banzhaf values equal enumeration for a small set; sampled ones converge."""
    from hsets_widgets.hsets.games import bernoulli_coalitions
    from hsets_widgets.hsets.idg import banzhaf_values

    ig = integrated_gradients(image8, tiny64, target=2, n_steps=16, rule="gauss-legendre")
    members = [0, 5, 9, 17, 30, 31, 44, 58, 62]
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, image8 - ig.baseline)
    exact = _exact_banzhaf(terms)
    v = estimate_value(terms, exact_limit=12)
    assert v.exact and np.allclose(v.banzhaf, exact, atol=1e-12)
    subsets = bernoulli_coalitions(len(members), 40_000, np.random.default_rng(3))
    d = np.abs(subset_scores(terms, subsets))
    est = banzhaf_values(subsets, d)
    se = np.sqrt(2 * d.var() * 4 / len(d))  # rough standard error of a difference of two means
    assert np.max(np.abs(est - exact)) < 5 * se
    sampled = estimate_value(terms, exact_limit=0, n_samples=2000, seed=1)
    assert sampled.banzhaf.shape == (len(members),) and np.corrcoef(sampled.banzhaf, exact)[0, 1] > 0.9


def test_idg_vis_is_the_path_average_of_the_absolute_directional_derivative(tiny64, image8):
    """IDG-Vis of a set from the stored path gradients equals integrating |grad . a_hat| point
    by point, and is never below |IDG|."""
    ig = integrated_gradients(image8, tiny64, target=2, n_steps=12, rule="gauss-legendre")
    assert ig.point_gradients.shape == (12, 3, 8, 8) and np.isclose(ig.weights.sum(), 1.0)
    members = [3, 10, 11, 40, 63]
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, image8 - ig.baseline,
                         point_gradients=ig.point_gradients, weights=ig.weights)
    f = ScoreFn(tiny64, 2)
    alphas, weights = path_points(12, "gauss-legendre")
    mask = torch.zeros(3, 64, dtype=torch.float64)
    mask[:, members] = 1
    a = ((image8 - ig.baseline) * mask.view(3, 8, 8))
    a_hat = a / a.norm()
    direct = 0.0
    for al, w in zip(alphas, weights):
        p = (ig.baseline + float(al) * (image8 - ig.baseline)).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(f(p).sum(), p)
        direct += float(w) * abs(float((g[0] * a_hat).sum()))
    whole = np.ones((1, 5), bool)
    vis = subset_scores(terms, whole, "idg-vis")[0]
    assert vis == pytest.approx(direct, rel=1e-6)      # the stored gradients are float32
    subsets = all_coalitions(5)
    assert np.all(subset_scores(terms, subsets, "idg-vis") >= np.abs(subset_scores(terms, subsets, "idg")) - 1e-9)
    with pytest.raises(ValueError, match="path points"):
        subset_scores(member_terms(members, ig.path_gradient, ig.abs_path_gradient, image8 - ig.baseline),
                      whole, "idg-vis")


def test_dividend_shares_split_each_subset_equally_and_add_up_to_the_value(tiny64, image8):
    ig = integrated_gradients(image8, tiny64, target=2, n_steps=16, rule="gauss-legendre")
    members = [0, 5, 9, 17, 30, 31]
    terms = member_terms(members, ig.path_gradient, ig.abs_path_gradient, image8 - ig.baseline)
    exact = estimate_value(terms, exact_limit=12)
    subsets = all_coalitions(6)
    d = np.abs(subset_scores(terms, subsets))
    by_hand = np.zeros(6)
    for row, dv in zip(subsets, d):          # each subset's d, split among its members
        by_hand[row] += dv / row.sum()
    by_hand /= len(subsets)
    assert np.allclose(exact.shares, by_hand, atol=1e-14) and exact.shares.sum() == pytest.approx(exact.value)
    for sampler in ("bernoulli", "stratified"):
        sampled = estimate_value(terms, exact_limit=0, n_samples=4000, sampler=sampler, seed=2)
        assert sampled.shares.sum() == pytest.approx(sampled.value, rel=1e-9)
        assert np.allclose(sampled.shares, exact.shares, rtol=0.1)
    authors = estimate_value(terms, value_kind="sample-sum", exact_limit=0, n_samples=30, seed=2)
    assert authors.shares.sum() == pytest.approx(authors.value, rel=1e-9)
