"""Games and estimators: each estimator against the exact mean of small games."""
import itertools

import numpy as np
import pytest

from hsets_widgets.hsets.games import (
    ESTIMATORS,
    Estimate,
    FunctionGame,
    Game,
    all_coalitions,
    get_estimator,
    size_shares,
)
from hsets_widgets.hsets.idg import IDGGame, MemberTerms, estimate_value


def _weighted_game(n=6, seed=0):
    """A non-additive game: a pairwise product term plus main effects plus a size penalty."""
    w = np.random.default_rng(seed).normal(size=n)
    return FunctionGame(n, lambda c: c @ w + 2.0 * c[:, 0] * c[:, 1] - 0.3 * c.sum(1) ** 1.5)


def _brute_mean(game):
    vals = []
    for bits in itertools.product([0, 1], repeat=game.n_players):
        if any(bits):
            vals.append(game(np.array([bits], bool))[0])
    return float(np.mean(vals))


def test_exact_estimator_is_the_mean_over_every_non_empty_coalition():
    game = _weighted_game()
    est = get_estimator("exact").estimate(game)
    assert isinstance(est, Estimate) and est.exact and est.stderr == 0.0
    assert len(est.coalitions) == 2 ** 6 - 1 and not (~est.coalitions.any(1)).any()
    assert est.mean == pytest.approx(_brute_mean(game), abs=1e-12)
    assert est.weights.sum() == pytest.approx(1.0)
    assert est.mean == pytest.approx(float(est.weights @ est.values))


@pytest.mark.parametrize("name", ["bernoulli", "stratified"])
def test_sampling_estimators_cover_the_exact_mean_within_their_standard_error(name):
    game = _weighted_game(8, seed=1)
    exact = get_estimator("exact").estimate(game).mean
    est = get_estimator(name).estimate(game, 4000, np.random.default_rng(2))
    assert not est.exact and est.stderr > 0
    assert abs(est.mean - exact) < 4 * est.stderr
    # the weights are what the mean was computed with (a view can replay it)
    assert est.mean == pytest.approx(float(est.weights @ est.values))
    # and over many seeds the estimates are unbiased: their average is within 4 s.e. of it
    means = [get_estimator(name).estimate(game, 300, np.random.default_rng(s)).mean for s in range(200)]
    assert abs(np.mean(means) - exact) < 4 * np.std(means) / np.sqrt(len(means))


def test_stratified_draws_follow_the_size_shares():
    n = 10
    est = ESTIMATORS["stratified"].estimate(FunctionGame(n, lambda c: c.sum(1)), 2000, np.random.default_rng(0))
    sizes = est.coalitions.sum(1)
    got = np.bincount(sizes, minlength=n + 1)[1:] / len(sizes)
    assert np.abs(got - size_shares(n)).max() < 0.01
    # a game that depends on the size alone has no variance inside a stratum: the estimate is exact
    exact = get_estimator("exact").estimate(FunctionGame(n, lambda c: c.sum(1))).mean
    assert est.mean == pytest.approx(exact, rel=1e-12)


def test_same_seed_same_draws_and_unknown_estimator_is_named():
    game = _weighted_game()
    a = get_estimator("bernoulli").estimate(game, 50, np.random.default_rng(7))
    b = get_estimator("bernoulli").estimate(game, 50, np.random.default_rng(7))
    assert np.array_equal(a.coalitions, b.coalitions) and a.mean == b.mean
    with pytest.raises(ValueError, match="unknown estimator 'shapley'.*exact, bernoulli, stratified"):
        get_estimator("shapley")


def test_the_set_value_is_its_idg_game_read_by_an_estimator():
    rng = np.random.default_rng(3)
    n = 9
    terms = MemberTerms(rng.normal(size=n), rng.random(n) + 0.1, rng.random(n))
    game = IDGGame(terms, "idg")
    assert isinstance(game, Game) and game.n_players == n
    exact = estimate_value(terms, "idg", exact_limit=12)
    assert exact.exact and exact.value == pytest.approx(get_estimator("exact").estimate(game).mean)
    sampled = estimate_value(terms, "idg", sampler="stratified", n_samples=500, exact_limit=0, seed=4)
    again = get_estimator("stratified").estimate(game, 500, np.random.default_rng(4))
    assert sampled.value == again.mean and np.array_equal(sampled.subsets, again.coalitions)
    summed = estimate_value(terms, "idg", value_kind="sample-sum", n_samples=30, exact_limit=0, seed=4)
    assert summed.value == pytest.approx(summed.samples.sum()) and summed.kind == "sample-sum"


def test_all_coalitions_refuses_what_cannot_be_enumerated():
    assert all_coalitions(3).shape == (7, 3)
    with pytest.raises(ValueError, match="sample instead"):
        all_coalitions(21)
