"""Threshold rules: which entries of a Hessian row admit a feature into a set.

A rule kind (:class:`RuleKind`) says how a row is scored and cut, and how a user interface
offers it (menu label, slider range); :data:`THRESHOLD_RULES` holds every kind by name and
:func:`register_rule` adds one, so a new rule works in the settings, the engine and the
Explorer's menus alike. A :class:`ThresholdRule` is one rule with its ``mu`` and options;
:func:`candidates` applies it to a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..plumbing.common import Registry


@dataclass(frozen=True)
class RuleKind:
    """One kind of threshold rule, as the engine applies it and a user interface offers it.

    Attributes
    ----------
    name : str
        The value of ``ThresholdRule.kind`` / ``HSetsConfig.threshold``.
    label : str
        What a menu shows.
    mu_range : tuple
        ``(min, max, step, default)`` of a mu slider; ``max`` None: taken from the seed's row.
    cut : callable or None
        ``cut(mu, seed_score) -> threshold``: entries whose score is above it pass.
        None: the ``round(mu)`` best entries of each row pass (a top-k rule).
    normalise : callable, optional
        ``normalise(row) -> score`` used instead of the sign (the authors' min-max row).
    text : callable
        ``text(mu, sign) -> str``: the rule in words, for labels and summaries.
    """

    name: str
    label: str
    mu_range: tuple
    cut: Optional[Callable[[float, float], float]]
    text: Callable[[float, str], str]
    normalise: Optional[Callable[[np.ndarray], np.ndarray]] = None

    @property
    def is_topk(self) -> bool:
        """Whether the rule keeps a number of entries per row (mu counts members)."""
        return self.cut is None


#: every threshold rule by name; :func:`register_rule` adds one (settings, menus and
#: slider ranges all read this table)
THRESHOLD_RULES = Registry(RuleKind, "threshold rule")
register_rule = THRESHOLD_RULES.register


def _minmax(row: np.ndarray) -> np.ndarray:
    lo, hi = row.min(), row.max()
    return (row - lo) / (hi - lo) if hi > lo else np.zeros_like(row)


register_rule(RuleKind("topk", "top-k entries of each row", (1.0, 512.0, 1.0, 256.0), None,
                       lambda mu, sign: f"top {topk_count(mu)} {{what}} per row ({sign})"))
register_rule(RuleKind("absolute", "|H| above mu (absolute)", (0.0, None, None, None),
                       lambda mu, seed_score: mu, lambda mu, sign: f"{sign} entry > {mu:g}"))
register_rule(RuleKind("seed-fraction", "above mu × |seed IG| (paper)", (0.0, 5.0, 0.01, 0.5),
                       lambda mu, seed_score: mu * abs(seed_score),
                       lambda mu, sign: f"{sign} entry > {mu:g} x |seed attribution|"))
register_rule(RuleKind("minmax", "min-max normalised row (authors' code)", (0.0, 1.0, 0.01, 0.5),
                       lambda mu, seed_score: mu, lambda mu, sign: f"min-max normalised row > {mu:g}",
                       normalise=_minmax))

def topk_count(mu: float) -> int:
    """How many entries a top-k rule keeps per row for ``mu``: a slider's 20.999999 means 21."""
    return int(round(float(mu)))


def rule_mu(kind: str, mu: float) -> float:
    """``mu`` as rule ``kind`` reads it: a whole number for a top-k rule (see
    :func:`topk_count`), unchanged otherwise. Views and growth keys use this, so two slider
    positions that grow the same set are the same setting.
    """
    return float(topk_count(mu)) if THRESHOLD_RULES[kind].is_topk else float(mu)


#: the built-in rule names (``THRESHOLD_RULES`` also holds any registered later)
RULES = tuple(THRESHOLD_RULES)
SIGNS = ("positive", "magnitude")


SCALES = ("none", "displacement")


@dataclass(frozen=True)
class ThresholdRule:
    """Which entries of a Hessian row admit a feature.

    Attributes
    ----------
    kind : {"absolute", "seed-fraction", "minmax", "topk"}
        ``absolute``: entry above ``mu``. ``seed-fraction`` (the paper): entry above
        ``mu * |attribution of the seed|``. ``minmax`` (the authors' code): the row is
        rescaled to [0, 1] by its min and max and entries above ``mu`` pass. ``topk``: the
        ``round(mu)`` largest entries of each row.
    mu : float
    sign : {"positive", "magnitude"}
        Compare the signed entry or its absolute value (``minmax`` always uses the signed
        row, as the authors did).
    blur : float
        Standard deviation, in pixels, of a Gaussian that smooths the compared entries over
        the image before they are ranked (0: no smoothing). Hessian entries flip sign from
        one pixel to the next; ranking the smoothed magnitude admits the region around the
        strongest interactions instead of scattered single pixels, so sets stay compact.
    fresh : bool
        With ``topk``: the ``k`` best features *not yet in the set* (and allowed), so every
        row adds exactly ``k`` members until the cap. Without it a row's top ``k`` entries
        are taken first and those already in the set are dropped, so rows near the middle
        of a compact set add few members and growth needs many more rows.
    scale : {"none", "displacement"}
        ``displacement`` multiplies entry ``j`` by ``|x - b|_j`` (the Integrated-Hessians
        form ``(x - b)_i (x - b)_j H_ij``; the seed's own factor is common to the row), so
        a feature that barely differs from the baseline cannot interact strongly.
    floor : float
        A floor under every admission, as a fraction of the largest ``|entry|`` of the
        seed's row (other than the seed's own): a feature whose raw ``|H_ij|`` is at most
        ``floor x max_j |H_seed,j|`` never passes, whatever its rank, so a set stops growing
        when nothing left interacts with it as strongly as that (0: no floor; a top-k rule
        then fills its ``k`` per row with whatever ranks highest).
    """

    kind: str = "topk"
    mu: float = 8.0
    sign: str = "magnitude"
    blur: float = 0.0
    fresh: bool = False
    scale: str = "none"
    floor: float = 0.0

    def __post_init__(self):
        if self.kind not in THRESHOLD_RULES:
            raise ValueError(f"unknown threshold rule {self.kind!r}; use one of {', '.join(THRESHOLD_RULES)}")
        if self.sign not in SIGNS:
            raise ValueError(f"unknown sign {self.sign!r}; use 'positive' or 'magnitude'")
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float, np.integer, np.floating)):
            raise ValueError(f"mu must be a number, got {self.mu!r}")
        if not np.isfinite(self.mu):
            raise ValueError(f"mu must be finite, got {self.mu}")
        if self.is_topk and self.mu < 1:
            raise ValueError(f"{self.kind} needs mu >= 1 (the number of entries kept per row), got {self.mu}")
        if not (isinstance(self.blur, (int, float)) and np.isfinite(self.blur) and self.blur >= 0):
            raise ValueError(f"blur must be a number of pixels >= 0, got {self.blur!r}")
        if not isinstance(self.fresh, (bool, np.bool_)):
            raise ValueError(f"fresh must be True or False, got {self.fresh!r}")
        if self.fresh and not self.is_topk:
            raise ValueError("fresh=True only applies to a top-k rule (it counts new members per row)")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; use one of {', '.join(SCALES)}")
        if isinstance(self.floor, bool) or not isinstance(self.floor, (int, float, np.integer, np.floating)) \
                or not 0 <= self.floor < 1:
            raise ValueError(f"floor must be a fraction of the seed row's largest entry, 0 <= floor < 1, "
                             f"got {self.floor!r}")

    def describe(self) -> str:
        """A short human-readable description of the rule (for labels and summaries)."""
        extra = []
        if self.blur:
            extra.append(f"smoothed over {self.blur:g} px")
        if self.scale == "displacement":
            extra.append("scaled by |x - b|")
        if self.floor:
            extra.append(f"|H| above {self.floor:g} x the seed row's largest")
        tail = f" ({', '.join(extra)})" if extra else ""
        text = THRESHOLD_RULES[self.kind].text(self.mu, self.sign)
        return text.replace("{what}", "new members" if self.fresh else "entries") + tail

    @property
    def is_topk(self) -> bool:
        """Whether ``mu`` counts entries kept per row (see :attr:`RuleKind.is_topk`)."""
        return THRESHOLD_RULES[self.kind].is_topk


def rule_scores(row: np.ndarray, rule: ThresholdRule, shape: Optional[tuple] = None,
                displacement: Optional[np.ndarray] = None) -> np.ndarray:
    """The per-feature score ``rule`` compares with its threshold (or ranks, for ``topk``).

    Parameters
    ----------
    row : ndarray (n_features,)
    shape : tuple (C, H, W), optional
        Image shape; needed when ``rule.blur > 0`` (pixel rows are ``H * W`` long,
        channel-pixel rows ``C * H * W``).
    displacement : ndarray (n_features,), optional
        ``|x - b|`` per feature; needed when ``rule.scale == "displacement"``.
    """
    row = np.asarray(row, dtype=np.float64)
    normalise = THRESHOLD_RULES[rule.kind].normalise
    if normalise is not None:
        score = normalise(row)
    else:
        score = np.abs(row) if rule.sign == "magnitude" else row
    if rule.scale == "displacement":
        if displacement is None:
            raise ValueError("the displacement scale needs |x - b| per feature")
        score = score * np.asarray(displacement, dtype=np.float64)
    if rule.blur:
        if shape is None:
            raise ValueError("a blurred threshold rule needs the image shape (C, H, W)")
        from scipy.ndimage import gaussian_filter

        c, h, w = shape
        grid = score.reshape(h, w) if score.size == h * w else score.reshape(c, h, w)
        sigma = rule.blur if grid.ndim == 2 else (0.0, rule.blur, rule.blur)
        score = gaussian_filter(grid, sigma, mode="constant").ravel()
    return score


def candidates(row: np.ndarray, rule: ThresholdRule, seed_score: float = 1.0,
               exclude: Optional[int] = None, shape: Optional[tuple] = None,
               blocked: Optional[np.ndarray] = None,
               displacement: Optional[np.ndarray] = None, floor_value: float = 0.0) -> np.ndarray:
    """Indices passing ``rule`` in ``row``, strongest first (ties by index).

    ``exclude`` (the row's own feature) never passes; ``blocked`` (a boolean mask of
    features already in the set or not allowed) is skipped before the top ``k`` are taken
    when ``rule.fresh``. ``shape`` and ``displacement`` are those of :func:`rule_scores`.
    With ``rule.floor``, features whose raw ``|row|`` is at most ``floor_value`` (the floor
    in the row's units, :func:`floor_value`) never pass.
    """
    score = rule_scores(row, rule, shape, displacement)
    if rule.floor:
        score = np.where(np.abs(np.asarray(row, dtype=np.float64)) > floor_value, score, -np.inf)
    if exclude is not None or (rule.fresh and blocked is not None):
        score = score.copy()
        if exclude is not None:
            score[exclude] = -np.inf
        if rule.fresh and blocked is not None:
            score[np.asarray(blocked, bool)] = -np.inf
    kind = THRESHOLD_RULES[rule.kind]
    if kind.is_topk:
        k = min(topk_count(rule.mu), score.size)
        idx = np.argpartition(-score, k - 1)[:k] if k < score.size else np.arange(score.size)
        idx = idx[np.isfinite(score[idx]) & (score[idx] > 0)]
    else:
        idx = np.flatnonzero(score > kind.cut(rule.mu, seed_score))
    order = np.lexsort((idx, -score[idx]))
    return idx[order]


def floor_value(seed_row: np.ndarray, rule: ThresholdRule, seed: int) -> float:
    """``rule.floor`` in the units of the rows: that fraction of the largest ``|entry|`` of the
    seed's row other than the seed's own (a diagonal entry is no interaction).
    """
    if not rule.floor:
        return 0.0
    a = np.abs(np.asarray(seed_row, dtype=np.float64)).copy()
    a[int(seed)] = 0.0
    return float(rule.floor * a.max()) if a.size else 0.0
