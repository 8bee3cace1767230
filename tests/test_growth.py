"""Growing sets: caps, monotonicity, traces, caching, and the authors' recursion order."""
import numpy as np
import pytest

from hsets_widgets.hsets.curvature import CurvatureSpec
from hsets_widgets.hsets.growth import grow_set, grow_sets, replay
from hsets_widgets.hsets.hessian import HessianRows
from hsets_widgets.hsets.thresholds import ThresholdRule, candidates
from hsets_widgets.model.scores import ScoreFn


@pytest.fixture
def rows(tiny64, image8):
    return HessianRows(image8, ScoreFn(tiny64, 1), "pixel", CurvatureSpec("softplus", beta=5.0), batch_size=8)


def test_candidates_rules():
    row = np.array([0.1, -3.0, 2.0, 0.5, 0.0])
    assert list(candidates(row, ThresholdRule("absolute", 0.4, "positive"))) == [2, 3]
    assert list(candidates(row, ThresholdRule("absolute", 0.4, "magnitude"))) == [1, 2, 3]
    assert list(candidates(row, ThresholdRule("seed-fraction", 0.5, "positive"), seed_score=-2.0)) == [2]
    assert list(candidates(row, ThresholdRule("topk", 2, "magnitude"))) == [1, 2]
    # min-max: (row + 3) / 5 > 0.5  <=>  row > -0.5
    assert list(candidates(row, ThresholdRule("minmax", 0.5))) == [2, 3, 0, 4]
    assert list(candidates(row, ThresholdRule("topk", 2), exclude=1)) == [2, 3]


@pytest.mark.parametrize("nu", [1, 5, 17])
def test_growth_never_exceeds_nu(rows, nu):
    g = grow_set(rows, 20, ThresholdRule("topk", 6), nu=nu)
    assert len(g) <= nu and len(set(g.members.tolist())) == len(g)
    assert g.members[0] == 20


def test_growth_is_monotone_in_mu(rows):
    mags = rows.rows(range(64)).abs()
    levels = np.quantile(mags.numpy(), [0.7, 0.8, 0.9, 0.97])
    prev = None
    for mu in levels:
        g = set(grow_set(rows, 27, ThresholdRule("absolute", float(mu), "magnitude"), nu=10_000).members.tolist())
        if prev is not None:
            assert g <= prev
        prev = g


@pytest.mark.parametrize("order", ["bfs", "dfs"])
def test_growth_replays_from_trace(rows, order):
    g = grow_set(rows, 9, ThresholdRule("topk", 3), nu=30, order=order)
    assert np.array_equal(replay(g.seed, g.steps), g.members)
    assert list(g.members_after(0)) == [9]
    sizes = [len(g.members_after(k)) for k in range(len(g.steps) + 1)]
    assert sizes == sorted(sizes) and sizes[-1] == len(g)


def test_regrowing_with_smaller_nu_or_higher_mu_reuses_rows(rows):
    mu = float(np.quantile(rows.rows(range(64)).abs().numpy(), 0.95))
    rows.clear()
    first = grow_set(rows, 9, ThresholdRule("absolute", mu), nu=10_000)
    assert len(first) < 64  # a set that filled the image stops early, before every row
    computed = rows.n_computed
    grow_set(rows, 9, ThresholdRule("absolute", mu), nu=6)
    grow_set(rows, 9, ThresholdRule("absolute", 2 * mu), nu=10_000)
    assert rows.n_computed == computed


def test_prefetch_does_not_change_the_set(rows, tiny64, image8):
    a = grow_set(rows, 33, ThresholdRule("topk", 4), nu=25, order="dfs", prefetch=1)
    other = HessianRows(image8, ScoreFn(tiny64, 1), "pixel", CurvatureSpec("softplus", beta=5.0), batch_size=16)
    b = grow_set(other, 33, ThresholdRule("topk", 4), nu=25, order="dfs", prefetch=16)
    assert np.array_equal(a.members, b.members)


@pytest.mark.parametrize("order", ["bfs", "dfs"])
def test_growing_sets_together_gives_the_same_sets_in_fewer_passes(tiny64, image8, order):
    def fresh():
        return HessianRows(image8, ScoreFn(tiny64, 1), "pixel", CurvatureSpec("softplus", beta=5.0),
                           batch_size=4)

    rule, seeds = ThresholdRule("topk", 3), [3, 20, 41, 58]
    alone = fresh()
    one_by_one = [grow_set(alone, s, rule, nu=20, order=order) for s in seeds]
    shared = fresh()
    together = grow_sets(shared, seeds, rule, nu=20, order=order)
    for a, b in zip(one_by_one, together):
        assert np.array_equal(a.members, b.members) and a.stopped == b.stopped
        assert [s.row for s in a.steps] == [s.row for s in b.steps]
    if order == "bfs":  # breadth-first look-ahead is exact: no row is computed in vain
        assert shared.n_computed == len({s.row for g in together for s in g.steps})
    assert shared.n_passes < alone.n_passes


def test_grow_sets_checks_its_per_seed_lists(rows):
    with pytest.raises(ValueError, match="got 2 seeds and 1 masks; give one per seed"):
        grow_sets(rows, [1, 2], ThresholdRule("topk", 3), nu=5, allowed=[None])


def test_dfs_follows_the_authors_recursion(rows):
    rule = ThresholdRule("topk", 3)
    nu = 25
    members = [5]

    def recurse(j):  # add every candidate of j, then recurse into each in turn
        nxt = []
        for n in candidates(rows.row(j).numpy(), rule, exclude=j):
            if int(n) not in members and len(members) < nu:
                members.append(int(n))
                nxt.append(int(n))
        for m in nxt:
            if len(members) >= nu:
                return
            recurse(m)

    recurse(5)
    g = grow_set(rows, 5, rule, nu=nu, order="dfs")
    assert g.members.tolist() == members


def test_allowed_mask_confines_the_set(rows):
    allowed = np.zeros(64, bool)
    allowed[:32] = True
    g = grow_set(rows, 3, ThresholdRule("topk", 5), nu=64, allowed=allowed)
    assert all(allowed[m] for m in g.members)


def test_bad_rules_are_rejected():
    with pytest.raises(ValueError, match="unknown threshold rule"):
        ThresholdRule("median", 1)
    with pytest.raises(ValueError, match="topk needs mu >= 1"):
        ThresholdRule("topk", 0.5)


def test_blurred_rule_ranks_the_smoothed_magnitude():
    """blur > 0 compares a Gaussian-smoothed |row| over the image grid (zero outside it)."""
    from scipy.ndimage import gaussian_filter

    from hsets_widgets.hsets.thresholds import rule_scores

    rng = np.random.default_rng(0)
    row = rng.standard_normal(36)
    rule = ThresholdRule("topk", 4, "magnitude", blur=1.5)
    expected = gaussian_filter(np.abs(row).reshape(6, 6), 1.5, mode="constant").ravel()
    assert np.allclose(rule_scores(row, rule, shape=(3, 6, 6)), expected)
    top = candidates(row, rule, shape=(3, 6, 6))
    assert set(top.tolist()) == set(np.argsort(-expected)[:4].tolist())
    chan = rule_scores(np.tile(row, 3), rule, shape=(3, 6, 6))   # channel rows: blurred per channel
    assert np.allclose(chan.reshape(3, 36), expected[None].repeat(3, 0))
    with pytest.raises(ValueError, match="shape"):
        candidates(row, rule)


def test_displacement_scale_multiplies_each_entry():
    from hsets_widgets.hsets.thresholds import rule_scores

    row = np.array([1.0, -2.0, 3.0, 0.5])
    disp = np.array([0.0, 1.0, 0.1, 4.0])
    rule = ThresholdRule("topk", 2, scale="displacement")
    assert np.allclose(rule_scores(row, rule, displacement=disp), np.abs(row) * disp)
    assert list(candidates(row, rule, displacement=disp)) == [1, 3]   # 2.0 and 2.0: index order


def test_fresh_topk_adds_exactly_k_new_members_per_row(rows):
    """With fresh=True every row adds k members not yet in the set until the cap, so a set
    of nu members needs ceil((nu - 1) / k) rows; the plain rule needs more."""
    fresh = grow_set(rows, 27, ThresholdRule("topk", 5, fresh=True), nu=31)
    assert [len(s.added) for s in fresh.steps] == [5] * 6
    plain = grow_set(rows, 27, ThresholdRule("topk", 5), nu=31)
    assert len(fresh) == len(plain) == 31 and plain.rows_used >= fresh.rows_used


def test_growth_confined_to_a_small_region_stops_when_it_is_full(rows):
    """Once every allowed feature joined, growth stops instead of expanding every member's
    row for nothing."""
    allowed = np.zeros(64, bool)
    allowed[[3, 4, 11, 12, 13, 20]] = True
    g = grow_set(rows, 12, ThresholdRule("topk", 4, fresh=True, blur=1.0), nu=50, allowed=allowed)
    assert set(g.members.tolist()) == set(np.flatnonzero(allowed).tolist())
    assert g.stopped == "exhausted" and g.rows_used <= 2


def test_authors_cap_counts_members_besides_the_seed(rows):
    """The authors' loop stops once more than nu features besides the seed joined."""
    rule = ThresholdRule("topk", 3, fresh=True)
    ours = grow_set(rows, 9, rule, nu=10)
    theirs = grow_set(rows, 9, rule, nu=10, cap="authors")
    assert len(ours) == 10 and len(theirs) == 12
    assert theirs.members[:10].tolist() == ours.members.tolist()
    with pytest.raises(ValueError, match="cap"):
        grow_set(rows, 9, rule, nu=10, cap="paper")


def test_one_nu_per_seed(rows):
    rule = ThresholdRule("topk", 3, fresh=True)
    a, b = grow_sets(rows, [3, 40], rule, nu=[4, 9])
    assert (len(a), len(b)) == (4, 9)
    with pytest.raises(ValueError, match="one per seed"):
        grow_sets(rows, [3, 40], rule, nu=[4])


@pytest.mark.parametrize("bad", [dict(blur=-1), dict(fresh=1), dict(scale="ih"), dict(kind="absolute", fresh=True),
                                 dict(mu=float("nan"))])
def test_rule_settings_are_checked(bad):
    kw = dict(kind="topk", mu=4.0)
    kw.update(bad)
    with pytest.raises(ValueError):
        ThresholdRule(**kw)


def test_growth_over_a_precomputed_matrix_equals_growth_over_the_cache(rows):
    from hsets_widgets.hsets.growth import MatrixRows, RowSource

    matrix = rows.rows(range(64)).numpy()
    exact = MatrixRows(matrix, rows.shape)
    assert isinstance(exact, RowSource) and isinstance(rows, RowSource)
    rule = ThresholdRule("topk", 4, blur=1.0)
    a = grow_set(rows, 12, rule, nu=30)
    b = grow_set(exact, 12, rule, nu=30)
    c = grow_set(matrix, 12, rule, nu=30, shape=rows.shape)          # a bare array is wrapped
    assert a.members.tolist() == b.members.tolist() == c.members.tolist()
    assert [s.row for s in a.steps] == [s.row for s in b.steps]


def test_growth_progress_never_goes_back_and_ends_full(rows):
    """Sets that stop before nu (here: an absolute threshold only a few features pass) shrink the
    total when they stop; the bar's fraction never goes back and ends at done == total (the
    Explorer once showed a total jumping from 3300 to 2415 at the end)."""
    mags = rows.rows(range(64)).abs().numpy()
    rule = ThresholdRule("absolute", float(np.quantile(mags, 0.97)), "magnitude")
    calls = []
    sets = grow_sets(rows, [3, 20, 40], rule, nu=[60, 60, 5], progress=lambda s, d, t: calls.append((d, t)))
    assert any(len(g) < 60 and g.stopped != "nu" for g in sets[:2]), "no set stopped early: nothing tested"
    fractions = [d / t for d, t in calls]
    assert all(b >= a - 1e-12 for a, b in zip(fractions, fractions[1:])), calls
    assert all(t2 <= t1 for (_, t1), (_, t2) in zip(calls, calls[1:])), calls
    assert calls[-1] == (sum(len(g) for g in sets),) * 2
    # the total shrinks when a set stops, while the others still grow (not all at the end)
    assert any(t < 125 for _, t in calls[:-1]), calls
