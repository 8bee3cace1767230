"""Growing sets: caps, monotonicity, traces, caching, and the authors' recursion order."""
import numpy as np
import pytest

from hsets_widgets.curvature import CurvatureSpec
from hsets_widgets.growth import ThresholdRule, candidates, grow_set, grow_sets, replay
from hsets_widgets.hessian import HessianRows
from hsets_widgets.scores import ScoreFn


@pytest.fixture
def rows(tiny64, image8):
    return HessianRows(ScoreFn(tiny64, 1), image8, "pixel", CurvatureSpec("softplus", beta=5.0), batch_size=8)


def test_candidates_rules():
    row = np.array([0.1, -3.0, 2.0, 0.5, 0.0])
    assert list(candidates(row, ThresholdRule("absolute", 0.4, "positive"))) == [2, 3]
    assert list(candidates(row, ThresholdRule("absolute", 0.4, "magnitude"))) == [1, 2, 3]
    assert list(candidates(row, ThresholdRule("seed-fraction", 0.5, "positive"), seed_attribution=-2.0)) == [2]
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
    mu = float(np.quantile(rows.rows(range(64)).abs().numpy(), 0.8))
    rows.clear()
    grow_set(rows, 9, ThresholdRule("absolute", mu), nu=10_000)
    computed = rows.n_computed
    grow_set(rows, 9, ThresholdRule("absolute", mu), nu=6)
    grow_set(rows, 9, ThresholdRule("absolute", 2 * mu), nu=10_000)
    assert rows.n_computed == computed


def test_prefetch_does_not_change_the_set(rows, tiny64, image8):
    a = grow_set(rows, 33, ThresholdRule("topk", 4), nu=25, order="dfs", prefetch=1)
    other = HessianRows(ScoreFn(tiny64, 1), image8, "pixel", CurvatureSpec("softplus", beta=5.0), batch_size=16)
    b = grow_set(other, 33, ThresholdRule("topk", 4), nu=25, order="dfs", prefetch=16)
    assert np.array_equal(a.members, b.members)


@pytest.mark.parametrize("order", ["bfs", "dfs"])
def test_growing_sets_together_gives_the_same_sets_in_fewer_passes(tiny64, image8, order):
    def fresh():
        return HessianRows(ScoreFn(tiny64, 1), image8, "pixel", CurvatureSpec("softplus", beta=5.0),
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
    with pytest.raises(ValueError, match="one of each per seed"):
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
