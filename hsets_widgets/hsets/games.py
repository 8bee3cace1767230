"""Cooperative games over the members of a set, and the estimators that read them.

A *game* gives every coalition of its ``n_players`` players a number: ``game(coalitions)``
takes a boolean ``(m, n_players)`` matrix (one coalition a row) and returns the ``m`` values.
A set's IDG value (:mod:`hsets_widgets.hsets.idg`) is the mean of such a game over all non-empty
coalitions; an interaction test plays a removal game over a set's parts. An *estimator*
turns a game and a budget of coalitions into an :class:`Estimate` of that mean:

``exact``
    every non-empty coalition (``2^n - 1`` of them; the budget is ignored).
``bernoulli``
    ``budget`` uniform non-empty coalitions (each player in with probability 1/2).
``stratified``
    ``budget`` coalitions spread over the coalition sizes in proportion to how many
    coalitions each size has, every size drawn uniformly inside its stratum.

All three share one call, ``estimator.estimate(game, budget, rng)``, and return the
coalitions they scored with each one's weight, so anything computed from the same draws
(Banzhaf values, dividend shares, a running-estimate plot) reads them from the estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Game(Protocol):
    """Anything with ``n_players`` and ``__call__(coalitions) -> values`` (see the module)."""

    n_players: int

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Values ``(m,)`` of the ``(m, n_players)`` boolean ``coalitions``."""
        ...


@dataclass(frozen=True)
class FunctionGame:
    """A game from a plain function of the coalition matrix (for tests and quick studies)."""

    n_players: int
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Values of ``coalitions`` under ``fn``, as float64."""
        return np.asarray(self.fn(np.asarray(coalitions, bool)), dtype=np.float64)


@dataclass(frozen=True)
class Estimate:
    """The mean of a game over its non-empty coalitions, and what it was computed from.

    Attributes
    ----------
    mean : float
        ``sum(weights * values)``.
    stderr : float
        Its standard error (0 when exact; NaN from a single draw).
    exact : bool
        Every non-empty coalition was scored.
    coalitions : ndarray of bool, shape (m, n_players)
        The coalitions scored, in draw order.
    values : ndarray, shape (m,)
        Their values.
    weights : ndarray, shape (m,)
        Each coalition's weight in ``mean`` (they sum to 1).
    """

    mean: float
    stderr: float
    exact: bool
    coalitions: np.ndarray
    values: np.ndarray
    weights: np.ndarray


def all_coalitions(n: int) -> np.ndarray:
    """Every non-empty coalition of ``n`` players as a bool matrix ``(2^n - 1, n)``, in bit-mask
    order (:func:`coalition_matrix` without the empty coalition).
    """
    return coalition_matrix(n)[1:]


def bernoulli_coalitions(n: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """``budget`` uniform non-empty coalitions (players in with probability 1/2; empty
    draws are drawn again).
    """
    out = rng.random((budget, n)) < 0.5
    empty = ~out.any(1)
    while empty.any():
        out[empty] = rng.random((int(empty.sum()), n)) < 0.5
        empty = ~out.any(1)
    return out


def size_shares(n: int) -> np.ndarray:
    """The share ``C(n, k) / (2^n - 1)`` of the non-empty coalitions that have size ``k``,
    for ``k = 1..n`` (in logs, so large ``n`` do not overflow).
    """
    k = np.arange(1, n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
    log_total = n * math.log(2.0) + math.log1p(-2.0 ** -n) if n < 1000 else n * math.log(2.0)
    return np.exp(logc - log_total)


def stratified_coalitions(n: int, budget: int, rng: np.random.Generator) -> tuple:
    """Coalitions stratified by size: ``(coalitions, sizes, shares)``.

    Sizes get draws in proportion to their share (:func:`size_shares`, largest remainder),
    at least two for every size that gets any, and a size-``k`` coalition is a uniform
    random ``k``-subset of the players.
    """
    w = size_shares(n)
    alloc = np.floor(w * budget).astype(int)
    rem = budget - alloc.sum()
    if rem > 0:
        alloc[np.argsort(-(w * budget - alloc))[:rem]] += 1
    alloc[(alloc == 1)] = 2
    rows, sizes = [], []
    for k, cnt in zip(range(1, n + 1), alloc):
        for _ in range(cnt):
            m = np.zeros(n, bool)
            m[rng.choice(n, size=k, replace=False)] = True
            rows.append(m)
            sizes.append(k)
    return np.asarray(rows), np.asarray(sizes), w


class Exact:
    """Every non-empty coalition, equally weighted (the budget and ``rng`` are unused)."""

    name = "exact"

    def estimate(self, game: Game, budget: Optional[int] = None,
                 rng: Optional[np.random.Generator] = None) -> Estimate:
        """The exact mean of ``game`` over its ``2^n - 1`` non-empty coalitions."""
        coalitions = all_coalitions(game.n_players)
        values = game(coalitions)
        weights = np.full(len(values), 1.0 / len(values))
        return Estimate(float(values.mean()), 0.0, True, coalitions, values, weights)


class Bernoulli:
    """Uniform non-empty coalitions; the mean of their values and its standard error."""

    name = "bernoulli"

    def estimate(self, game: Game, budget: int, rng: np.random.Generator) -> Estimate:
        """The mean of ``game`` from ``budget`` uniform draws made with ``rng``."""
        coalitions = bernoulli_coalitions(game.n_players, budget, rng)
        values = game(coalitions)
        se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        return Estimate(float(values.mean()), se, False, coalitions, values,
                        np.full(len(values), 1.0 / len(values)))


class Stratified:
    """Coalitions stratified by size; strata weighted by their share of all coalitions."""

    name = "stratified"

    def estimate(self, game: Game, budget: int, rng: np.random.Generator) -> Estimate:
        """The stratified mean of ``game`` from about ``budget`` draws made with ``rng``."""
        coalitions, sizes, shares = stratified_coalitions(game.n_players, budget, rng)
        values = game(coalitions)
        used = np.unique(sizes)
        total_share = shares[used - 1].sum()
        mean, var = 0.0, 0.0
        weights = np.zeros(len(values))
        for k in used:
            at = sizes == k
            wk = shares[k - 1] / total_share
            mean += wk * values[at].mean()
            var += wk ** 2 * values[at].var(ddof=1) / at.sum()
            weights[at] = wk / at.sum()
        return Estimate(float(mean), float(np.sqrt(var)), False, coalitions, values, weights)


#: every estimator by name (``HSetsConfig.sampler`` names the sampling ones)
ESTIMATORS = {e.name: e for e in (Exact(), Bernoulli(), Stratified())}


def get_estimator(name: str):
    """The estimator called ``name`` (:data:`ESTIMATORS`), with a clear error otherwise."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; use one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


# ---- exact analysis of small games: all 2^n coalitions, indexed by bit mask -----------------
def coalition_matrix(n: int) -> np.ndarray:
    """Every coalition of ``n`` players, the empty one first, as a bool matrix ``(2^n, n)``;
    row ``t`` is the coalition whose bit mask is ``t`` (player ``i`` in it when bit ``i`` is set).
    """
    if n > 20:
        raise ValueError(f"refusing to enumerate 2^{n} coalitions; sample instead, or use fewer players")
    codes = np.arange(2 ** n, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n)) & 1).astype(bool)


def moebius(values: np.ndarray) -> np.ndarray:
    """Harsanyi (Moebius) dividends ``m(S) = sum_{T in S} (-1)^(|S|-|T|) v(T)`` of a game
    given by its values on every coalition in bit-mask order (:func:`coalition_matrix`).

    They add up to ``v(N) - v(empty)`` over the non-empty coalitions, and ``m(empty) = v(empty)``.
    """
    m = np.array(values, dtype=np.float64, copy=True)
    n = int(round(np.log2(len(m))))
    if 2 ** n != len(m):
        raise ValueError(f"need one value per coalition (a power of two), got {len(m)}")
    masks = np.arange(len(m))
    for i in range(n):
        has = (masks >> i) & 1 == 1
        m[has] -= m[masks[has] ^ (1 << i)]
    return m


INDICES = ("sii", "bii")


def pair_interactions(dividends: np.ndarray, index: str = "sii") -> np.ndarray:
    """The pairwise interaction ``I(i, j)`` of every two players, ``(n, n)`` symmetric with a
    zero diagonal, from the game's dividends.

    ``sii``: the Shapley interaction index, ``sum_{S >= {i, j}} m(S) / (|S| - 1)``;
    ``bii``: the Banzhaf interaction index, ``sum_{S >= {i, j}} m(S) / 2^(|S| - 2)``.
    A game with no interaction (every dividend of two or more players 0) gives zeros.
    """
    if index not in INDICES:
        raise ValueError(f"unknown interaction index {index!r}; use one of {', '.join(INDICES)}")
    m = np.asarray(dividends, dtype=np.float64)
    n = int(round(np.log2(len(m))))
    sets = coalition_matrix(n)
    size = sets.sum(1)
    big = size >= 2
    weight = np.zeros(len(m))
    weight[big] = 1.0 / (size[big] - 1) if index == "sii" else 2.0 ** -(size[big] - 2.0)
    w = (m * weight)[:, None, None] * (sets[:, :, None] & sets[:, None, :])
    out = w.sum(0)
    np.fill_diagonal(out, 0.0)
    return out


def nonadditive_share(values: np.ndarray) -> float:
    """The share of a game's variance over all its coalitions that the best additive model
    ``v(T) ~ b + sum_{i in T} a_i`` (least squares) leaves unexplained: 0 for an additive game,
    up to 1 for a game whose value depends on the players only together. A constant game: 0.
    """
    v = np.asarray(values, dtype=np.float64)
    n = int(round(np.log2(len(v))))
    x = np.hstack([np.ones((len(v), 1)), coalition_matrix(n).astype(np.float64)])
    coef, *_ = np.linalg.lstsq(x, v, rcond=None)
    total = float(((v - v.mean()) ** 2).sum())
    if total <= 1e-300:
        return 0.0
    return float(((v - x @ coef) ** 2).sum() / total)
