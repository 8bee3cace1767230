"""Integrated Directional Gradients of feature sets, and their Harsanyi-style value.

For a set ``S`` with direction ``a_S = (x - b)`` restricted to ``S``, IDG is the path
average of the directional derivative along ``a_S / ||a_S||``. Because the path does not
depend on ``S``, ``IDG(S) = (G . a_S) / ||a_S||`` with ``G`` the path-averaged gradient
(:class:`~hsets_widgets.hsets.integrated_gradients.IGResult.path_gradient`), i.e. the IG mass of
``S`` over the norm of its displacement. Every subset therefore costs a masked sum:
thousands of subsets of a 2,000-member set are scored in milliseconds.

The value of a set, ``v(I) = sum over subsets T of I of d(T)`` with ``d(T) = |IDG(T)|``,
has ``2^|I|`` terms (beyond float range for ``|I| ~ 1000``). This module reports it as the
**mean** of ``d`` over the non-empty subsets (``v(I) / (2^|I| - 1)``, estimated with a
standard error, exact for small sets), or as the authors' **sample-sum** (the plain sum of
``d`` over the drawn subsets). ``log2_total`` gives ``log2 v(I)`` for the paper's sum.

The same subset draws also give, for each member, its **Banzhaf value** in the game ``d``,
the mean change of ``d`` when the member joins a random subset of the others
(:func:`banzhaf_values`), and its **share** of the value when every subset's ``d`` is split
equally among the subset's members (:func:`dividend_shares`; with ``d(T)`` read as the
Harsanyi dividend of ``T``, as the paper does, this is the Shapley value, and the shares add
up to the set's value). The heatmap can use either to rank or weigh the pixels of a set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .games import get_estimator
from .integrated_gradients import batch_gradients

SET_SCORES = ("idg", "idg-vis", "abs-gradient")
VALUE_KINDS = ("mean", "sample-sum")
#: the estimators a large set's value can be sampled with (:mod:`hsets_widgets.hsets.games`)
SAMPLERS = ("bernoulli", "stratified")


@dataclass
class MemberTerms:
    """Per-member quantities from which any subset's score is a ratio of sums.

    ``ig`` is each member's IG (``sum_c G_c (x - b)_c``), ``sq`` its squared displacement
    (``sum_c (x - b)_c^2``), ``abs_sq`` ``sum_c ((x - b)_c |G|_c)^2`` (authors' variant).
    ``path`` (``(n_members, K)``, optional) holds each member's ``grad_k . (x - b)`` at each
    of the ``K`` path points and ``weights`` their quadrature weights (for IDG-Vis).
    """

    ig: np.ndarray
    sq: np.ndarray
    abs_sq: np.ndarray
    path: Optional[np.ndarray] = None
    weights: Optional[np.ndarray] = None


def member_terms(members, path_gradient: torch.Tensor, abs_path_gradient: torch.Tensor,
                 delta: torch.Tensor, features: str = "pixel", point_gradients: Optional[torch.Tensor] = None,
                 weights: Optional[np.ndarray] = None) -> MemberTerms:
    """Gather :class:`MemberTerms` of ``members`` (feature indices).

    ``path_gradient``, ``abs_path_gradient`` and ``delta = x - b`` are ``(3, H, W)``;
    ``point_gradients`` (``(K, 3, H, W)``) and ``weights`` (``(K,)``) are the gradients at the
    path points and their weights (:class:`~hsets_widgets.hsets.integrated_gradients.IGResult`),
    needed for ``idg-vis``.
    """
    idx = torch.as_tensor(np.asarray(members, dtype=np.int64))
    g = path_gradient.detach().double().cpu()
    ga = abs_path_gradient.detach().double().cpu()
    d = delta.detach().double().cpu()
    if features == "pixel":
        c = g.shape[0]
        ig = (g * d).reshape(c, -1).sum(0)[idx]
        sq = (d * d).reshape(c, -1).sum(0)[idx]
        abs_sq = ((d * ga) ** 2).reshape(c, -1).sum(0)[idx]
    else:
        ig = (g * d).flatten()[idx]
        sq = (d * d).flatten()[idx]
        abs_sq = ((d * ga) ** 2).flatten()[idx]
    path = None
    if point_gradients is not None:
        pg = point_gradients.detach().cpu()
        k, c = pg.shape[:2]
        if features == "pixel":
            sel = pg.reshape(k, c, -1)[:, :, idx].double() * d.reshape(c, -1)[:, idx]
            path = sel.sum(1).T.numpy()
        else:
            path = (pg.reshape(k, -1)[:, idx].double() * d.flatten()[idx]).T.numpy()
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (k,):
            raise ValueError(f"need one weight per path point ({k}), got shape {weights.shape}")
    return MemberTerms(ig.numpy(), sq.numpy(), abs_sq.numpy(), path, weights)


def subset_scores(terms: MemberTerms, subsets: np.ndarray, kind: str = "idg") -> np.ndarray:
    """Signed scores of many subsets at once.

    Parameters
    ----------
    terms : MemberTerms
    subsets : ndarray of bool, shape (n_subsets, n_members)
    kind : {"idg", "idg-vis", "abs-gradient"}
        ``idg``: ``(G . a_T) / ||a_T||`` (Sikdar et al.); ``idg-vis``: the path average of
        ``|grad . a_T| / ||a_T||`` (the absolute value taken at each path point, as the
        method's later version describes IDG-Vis; always >= 0, and at least ``|idg|``);
        ``abs-gradient``: the authors' ``|| a_T / ||a_T|| * mean |grad| ||_2`` (always >= 0).

    Subsets with zero displacement (empty, or all members equal to the baseline) score 0.
    """
    m = np.asarray(subsets, dtype=np.float64)
    norm = np.sqrt(m @ terms.sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == "idg":
            s = (m @ terms.ig) / norm
        elif kind == "idg-vis":
            if terms.path is None:
                raise ValueError("the idg-vis score needs the gradients at the path points "
                                 "(member_terms(..., point_gradients=, weights=))")
            s = (np.abs(m @ terms.path) @ terms.weights) / norm
        elif kind == "abs-gradient":
            s = np.sqrt(m @ terms.abs_sq) / norm
        else:
            raise ValueError(f"unknown set score {kind!r}; use one of {', '.join(SET_SCORES)}")
    return np.where(norm > 0, s, 0.0)


def set_score(terms: MemberTerms, kind: str = "idg") -> float:
    """Signed score of the whole set."""
    return float(subset_scores(terms, np.ones((1, len(terms.ig)), bool), kind)[0])


def idg_direct(x: torch.Tensor, f, baseline: torch.Tensor, set_mask: torch.Tensor, alphas, weights) -> float:
    """IDG of one set by explicit path integration (reference for tests; slow).

    ``set_mask`` is a ``(3, H, W)`` 0/1 tensor of the set's channel-pixels.
    """
    a = (x - baseline) * set_mask
    a_hat = a / a.norm()
    total = 0.0
    for al, w in zip(alphas, weights):
        g = batch_gradients((baseline + float(al) * (x - baseline)).unsqueeze(0), f)
        total += float(w) * float((g[0] * a_hat).sum())
    return total


@dataclass
class SetValue:
    """Value of one set.

    Attributes
    ----------
    value : float
        ``mean`` of ``d`` over non-empty subsets, or the ``sample-sum``.
    stderr : float
        Standard error of ``value`` (0 when exact).
    kind : str
        ``"mean"`` or ``"sample-sum"``.
    exact : bool
        True when every non-empty subset was scored.
    n_samples : int
    signed_score : float
        Signed score of the whole set (its sign colours the heatmap).
    log2_total : float
        ``log2`` of the full subset sum ``v(I) = (2^n - 1) * mean``.
    samples : ndarray
        ``d`` of each drawn subset, in draw order (for running-estimate plots).
    banzhaf : ndarray
        Banzhaf value of each member in the game ``d`` (member order), exact when
        ``exact``, else estimated from the same subsets (:func:`banzhaf_values`).
    shares : ndarray
        Each member's share of ``value`` when each subset's ``d`` is split equally among its
        members (:func:`dividend_shares`); they sum to ``value``.
    subsets : ndarray
        The ``(n_samples, n)`` bool matrix of the subsets scored, in draw order (row ``t``
        gave ``samples[t]``): what a view shows is what the value was computed from.
    weights : ndarray
        Each draw's weight in ``value`` (``value = sum(weights * samples)``): equal for
        Bernoulli draws and exact enumeration, by size stratum for ``"stratified"``, ones
        for the ``"sample-sum"``.
    """

    value: float
    stderr: float
    kind: str
    exact: bool
    n_samples: int
    signed_score: float
    log2_total: float
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    banzhaf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    subsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))


def dividend_shares(subsets: np.ndarray, d: np.ndarray, subset_weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Each member's share when every subset's ``d`` is split equally among its members.

    ``share_i = sum_T p(T) d(T) [i in T] / |T|`` with ``p(T)`` the subsets' weights (default:
    equal, i.e. the mean over the given subsets; pass all subsets for the exact value). The
    shares add up to ``sum_T p(T) d(T)``, the set's value.
    """
    m = np.asarray(subsets, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    p = np.full(len(d), 1.0 / max(len(d), 1)) if subset_weights is None else np.asarray(subset_weights, np.float64)
    size = np.maximum(m.sum(1), 1.0)
    return (p * d / size) @ m


def banzhaf_values(subsets: np.ndarray, d: np.ndarray, exact: bool = False) -> np.ndarray:
    """Banzhaf value of every member in the game ``d`` from scored subsets.

    ``phi_i = E_T [d(T + i) - d(T)]`` over the ``2^(n-1)`` subsets ``T`` of the other
    members. With ``exact`` (``subsets`` = every non-empty subset,
    :func:`~hsets_widgets.hsets.games.all_coalitions`) this is computed exactly, the empty set
    scoring 0. Otherwise ``subsets`` are uniform random draws and the estimate is the difference
    of the mean ``d`` of the draws that contain ``i`` and of those that do not (each draw then
    serves every member: the maximum-sample-reuse estimator); a member that is always in or always out gets 0.

    Parameters
    ----------
    subsets : ndarray of bool, shape (n_subsets, n_members)
    d : ndarray, shape (n_subsets,)
    exact : bool
    """
    m = np.asarray(subsets, dtype=bool)
    d = np.asarray(d, dtype=np.float64)
    inside = d @ m
    outside = d.sum() - inside
    if exact:
        return (inside - outside) / 2.0 ** (m.shape[1] - 1)
    n_in = m.sum(0)
    n_out = m.shape[0] - n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = inside / n_in - outside / n_out
    return np.where((n_in > 0) & (n_out > 0), phi, 0.0)


@dataclass(frozen=True)
class IDGGame:
    """The game whose mean is a set's value: coalition ``T`` of the members is worth
    ``d(T) = |score(T)|`` (:func:`subset_scores` of ``kind``), the empty coalition 0.
    """

    terms: MemberTerms
    kind: str = "idg"

    @property
    def n_players(self) -> int:
        """The number of members."""
        return len(self.terms.ig)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """``|score|`` of each coalition (one a row of a bool matrix)."""
        return np.abs(subset_scores(self.terms, coalitions, self.kind))


def estimate_value(terms: MemberTerms, kind: str = "idg", value_kind: str = "mean",
                   sampler: str = "bernoulli", n_samples: int = 1000, exact_limit: int = 12,
                   seed=0) -> SetValue:
    """Value ``v(I)`` of a set from its :class:`MemberTerms`.

    The set's :class:`IDGGame` is read by an estimator (:mod:`hsets_widgets.hsets.games`): sets of
    at most ``exact_limit`` members exactly, over all their subsets; larger sets from
    ``n_samples`` random subsets of ``sampler`` (``"bernoulli"`` or ``"stratified"``) with
    generator ``seed`` (a whole number or a tuple of them, as NumPy's ``default_rng`` takes;
    :meth:`~hsets_widgets.hsets.explain.Explainer.value` passes the config's seed and the set's seed
    feature). ``value_kind="sample-sum"`` reports the plain sum of the Bernoulli
    draws (the authors' value) instead of their mean.
    """
    if value_kind not in VALUE_KINDS:
        raise ValueError(f"unknown value kind {value_kind!r}; use 'mean' or 'sample-sum'")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; use 'bernoulli' or 'stratified'")
    game = IDGGame(terms, kind)
    n = game.n_players
    if n == 0:
        raise ValueError("cannot value an empty set")
    exact = value_kind == "mean" and n <= exact_limit
    if value_kind == "sample-sum":
        sampler = "bernoulli"
    est = get_estimator("exact" if exact else sampler).estimate(game, n_samples, np.random.default_rng(seed))
    value, stderr, weights = est.mean, est.stderr, est.weights
    if value_kind == "sample-sum":
        m = len(est.values)
        value, stderr, weights = float(est.values.sum()), est.stderr * m, np.ones(m)
    log2_count = n + math.log2(1.0 - 2.0 ** -n) if n < 1000 else float(n)
    return SetValue(value=float(value), stderr=float(stderr), kind=value_kind, exact=est.exact,
                    n_samples=len(est.values), signed_score=set_score(terms, kind),
                    log2_total=_log2(est.mean) + log2_count, samples=est.values,
                    banzhaf=banzhaf_values(est.coalitions, est.values, exact=est.exact),
                    shares=dividend_shares(est.coalitions, est.values, weights),
                    subsets=est.coalitions, weights=weights)


def running_estimate(samples: np.ndarray, weights: Optional[np.ndarray] = None) -> tuple:
    """Running estimate and standard error of ``samples`` after each draw (for plots).

    Without ``weights``: the running mean and its standard error. With each draw's weight in
    the final estimate (:attr:`SetValue.weights`, e.g. stratified draws in a shuffled
    order): the running weighted mean ``sum(w d) / sum(w)``, which ends at the estimate, with
    the ratio estimator's linearised standard error.
    """
    d = np.asarray(samples, dtype=np.float64)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != d.shape or (w < 0).any() or not w.sum() > 0:
            raise ValueError("weights must be one non-negative number per sample, not all zero")
        cw = np.cumsum(w)
        mean = np.cumsum(w * d) / cw
        # sum w^2 (d - m)^2 expanded, so every prefix costs O(1)
        s2 = np.cumsum(w * w * d * d) - 2 * mean * np.cumsum(w * w * d) + mean ** 2 * np.cumsum(w * w)
        se = np.sqrt(np.clip(s2, 0, None)) / cw
        if len(se):
            se[0] = np.nan
        return mean, se
    n = np.arange(1, len(d) + 1)
    mean = np.cumsum(d) / n
    sq = np.cumsum(d * d) / n
    var = np.clip(sq - mean ** 2, 0, None) * n / np.maximum(n - 1, 1)
    se = np.sqrt(var / n)
    se[0] = np.nan if len(se) else se
    return mean, se


def _log2(v: float) -> float:
    return math.log2(v) if v > 0 else float("-inf")
