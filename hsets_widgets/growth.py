"""Growing an interaction set from a seed by following Hessian rows.

Starting from the seed, the row of each member proposes candidates (features whose row
entry passes the threshold); new candidates join the set and are expanded in turn,
breadth-first or depth-first, until nothing new passes or the set has ``nu`` members.
Every step is recorded in a :class:`GrowthTrace`, so the merge can be replayed, and rows
come from a :class:`~hsets_widgets.hessian.HessianRows` cache, so regrowing with another
``mu`` or ``nu`` only computes rows never seen before.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .progress import CancelToken, ProgressFn, report


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
THRESHOLD_RULES: dict = {}


def register_rule(kind: RuleKind) -> RuleKind:
    """Add a threshold rule (or replace one of the same name); returns it."""
    if not isinstance(kind, RuleKind):
        raise TypeError(f"register_rule takes a RuleKind, got {type(kind).__name__}")
    THRESHOLD_RULES[kind.name] = kind
    return kind


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
GROWTH_ORDERS = ("bfs", "dfs")


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
    """

    kind: str = "topk"
    mu: float = 8.0
    sign: str = "magnitude"
    blur: float = 0.0
    fresh: bool = False
    scale: str = "none"

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

    def describe(self) -> str:
        """A short human-readable description of the rule (for labels and summaries)."""
        extra = []
        if self.blur:
            extra.append(f"smoothed over {self.blur:g} px")
        if self.scale == "displacement":
            extra.append("scaled by |x - b|")
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
               displacement: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices passing ``rule`` in ``row``, strongest first (ties by index).

    ``exclude`` (the row's own feature) never passes; ``blocked`` (a boolean mask of
    features already in the set or not allowed) is skipped before the top ``k`` are taken
    when ``rule.fresh``. ``shape`` and ``displacement`` are those of :func:`rule_scores`.
    """
    score = rule_scores(row, rule, shape, displacement)
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


@dataclass
class GrowthStep:
    """Row ``row`` was expanded and admitted ``added`` (in order)."""

    row: int
    added: list


@dataclass
class GrownSet:
    """The result of growing one set.

    Attributes
    ----------
    seed : int
    members : ndarray of int
        Feature indices in the order they joined (the seed first).
    steps : list of GrowthStep
        The trace: which row added which members, in order.
    stopped : str
        ``"nu"`` (size cap reached), ``"exhausted"`` (nothing new passed) or
        ``"max_rows"`` (row budget spent).
    rule : ThresholdRule
    nu : int
    order : str
    """

    seed: int
    members: np.ndarray
    steps: list = field(default_factory=list)
    stopped: str = "exhausted"
    rule: Optional[ThresholdRule] = None
    nu: int = 0
    order: str = "bfs"

    @property
    def rows_used(self) -> int:
        """Number of Hessian rows the growth read."""
        return len(self.steps)

    def __len__(self) -> int:
        return int(len(self.members))

    def members_after(self, n_steps: int) -> np.ndarray:
        """Members after the first ``n_steps`` steps of the trace (0 gives the seed alone)."""
        return replay(self.seed, self.steps[:n_steps])


def replay(seed: int, steps) -> np.ndarray:
    """Rebuild the member list from a trace."""
    out = [int(seed)]
    for s in steps:
        out.extend(int(i) for i in s.added)
    return np.asarray(out, dtype=np.int64)


CAPS = ("members", "authors")
#: ``each``: every set has at most ``nu`` members; ``mass``: ``nu`` members in all, shared
#: among the automatic seeds in proportion to their segments' positive attribution mass
NU_SPLITS = ("each", "mass")


def split_nu(nu: int, masses, total_mass: float, n_shares: int, areas=None) -> list:
    """The largest size of each set when ``nu`` members are shared by attribution mass.

    Set ``k`` gets ``nu * masses[k] / total_mass`` members (``nu / n_shares`` each when the
    total is not positive), at least 1 and at most ``areas[k]`` when given (the features of
    its segment, for sets confined to it).
    """
    if isinstance(nu, bool) or not isinstance(nu, (int, np.integer)) or nu < 1:
        raise ValueError(f"nu must be a whole number >= 1, got {nu!r}")
    sizes = []
    for k, mass in enumerate(masses):
        share = mass / total_mass if total_mass > 0 else 1.0 / n_shares
        size = max(1, int(round(nu * share)))
        if areas is not None and areas[k] is not None:
            size = min(size, int(areas[k]))
        sizes.append(size)
    return sizes


class _Grower:
    """One set's growth, advanced a row at a time (so several sets can share row passes)."""

    def __init__(self, seed, rule, nu, order, allowed, seed_score, max_rows, shape=None,
                 displacement=None, cap="members"):
        if order not in GROWTH_ORDERS:
            raise ValueError(f"unknown order {order!r}; use 'bfs' or 'dfs'")
        if isinstance(nu, bool) or not isinstance(nu, (int, np.integer)) or nu < 1:
            raise ValueError(f"nu must be a whole number >= 1, got {nu!r}")
        if cap not in CAPS:
            raise ValueError(f"unknown cap {cap!r}; use 'members' or 'authors'")
        self.seed = int(seed)
        self.rule, self.nu, self.order = rule, int(nu), order
        # 'authors': the seed is not counted and growth stops once more than nu others joined
        self.limit = self.nu + 2 if cap == "authors" else self.nu
        self.allowed, self.seed_score, self.max_rows = allowed, seed_score, max_rows
        self.shape, self.displacement = shape, displacement
        self.members = [self.seed]
        self.blocked = None  # features in the set or not allowed, made on the first row
        self.frontier = deque([self.seed])
        self.steps = []
        self.stopped = None

    def done(self) -> bool:
        if self.stopped is None:
            full = self.blocked is not None and bool(self.blocked.all())
            if not self.frontier or (full and len(self.members) < self.limit):
                # nothing left to expand, or every allowed feature already joined
                self.stopped = "nu" if len(self.members) >= self.limit else "exhausted"
            elif len(self.members) >= self.limit:
                self.stopped = "nu"
            elif self.max_rows is not None and len(self.steps) >= self.max_rows:
                self.stopped = "max_rows"
        return self.stopped is not None

    @property
    def next_node(self) -> int:
        return self.frontier[0] if self.order == "bfs" else self.frontier[-1]

    def ahead(self, prefetch: int) -> list:
        """The next rows to expand, ``next_node`` first. Breadth-first with a top-k rule,
        all of them will be expanded: each row adds at most k members, so at least
        ceil(remaining / k) more rows are (and BFS takes them in frontier order).
        """
        need = prefetch
        if self.rule.is_topk:
            need = min(prefetch, max(1, -(-(self.limit - len(self.members)) // topk_count(self.rule.mu))))
        if self.max_rows is not None:
            need = min(need, max(1, self.max_rows - len(self.steps)))
        n = min(need, len(self.frontier))
        if self.order == "bfs":
            return [self.frontier[i] for i in range(n)]
        return [self.frontier[-1 - i] for i in range(n)]

    def expand(self, row) -> None:
        node = self.frontier.popleft() if self.order == "bfs" else self.frontier.pop()
        if self.blocked is None:
            self.blocked = np.zeros(np.size(row), bool) if self.allowed is None else ~np.asarray(self.allowed, bool)
            self.blocked[self.members] = True
        added = []
        for i in candidates(row, self.rule, self.seed_score, exclude=node, shape=self.shape,
                            blocked=self.blocked, displacement=self.displacement):
            if self.blocked[i]:
                continue
            if len(self.members) >= self.limit:
                break
            i = int(i)
            self.members.append(i)
            self.blocked[i] = True
            added.append(i)
        self.steps.append(GrowthStep(node, added))
        self.frontier.extend(added if self.order == "bfs" else reversed(added))

    def result(self) -> GrownSet:
        return GrownSet(self.seed, np.asarray(self.members, dtype=np.int64), self.steps, self.stopped,
                        self.rule, self.nu, self.order)


def _row(rows, index: int) -> np.ndarray:
    return rows.row(index).numpy() if hasattr(rows, "row") else np.asarray(rows[index])


def _is_cached(rows, index: int) -> bool:
    return hasattr(rows, "__contains__") and index in rows


def grow_sets(rows, seeds, rule: ThresholdRule, nu: int = 2000, order: str = "bfs",
              allowed=None, seed_scores=None, max_rows: Optional[int] = None,
              prefetch: Optional[int] = None, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None, *, shape: Optional[tuple] = None,
              displacement: Optional[np.ndarray] = None, cap: str = "members") -> list:
    """Grow the sets of several seeds side by side, sharing Hessian-row passes.

    Each set grows exactly as :func:`grow_set` grows it alone (same rows, same order, same
    members); only the scheduling differs: every pass computes the row each unfinished set
    expands next, filled up to a multiple of ``prefetch`` with rows those sets are certain
    to expand later. A batched pass costs far less per row than a pass of one row, so
    growing five sets together takes fewer, fuller passes.

    Parameters
    ----------
    seeds : sequence of int
    nu : int or sequence of int
        Largest set size, for every set or one per seed.
    allowed : sequence of (ndarray of bool or None), optional
        One feature mask per seed (see :func:`grow_set`).
    seed_scores : sequence of float, optional
        One attribution per seed (for the ``seed-fraction`` rule).

    Other parameters are those of :func:`grow_set`. Returns one :class:`GrownSet` per seed.
    """
    seeds = [int(s) for s in seeds]
    allowed = list(allowed) if allowed is not None else [None] * len(seeds)
    attrs = list(seed_scores) if seed_scores is not None else [1.0] * len(seeds)
    if not len(allowed) == len(attrs) == len(seeds):
        raise ValueError(f"got {len(seeds)} seeds, {len(allowed)} masks and {len(attrs)} seed "
                         "attributions; give one of each per seed")
    shape = shape if shape is not None else getattr(rows, "shape", None)
    nus = list(nu) if isinstance(nu, (list, tuple, np.ndarray)) else [nu] * len(seeds)
    if len(nus) != len(seeds):
        raise ValueError(f"got {len(seeds)} seeds and {len(nus)} set sizes; give one nu or one per seed")
    growers = [_Grower(s, rule, n, order, a, sa, max_rows, shape, displacement, cap)
               for s, n, a, sa in zip(seeds, nus, allowed, attrs)]
    if prefetch is None:
        prefetch = getattr(rows, "batch_size", 8)
    if int(prefetch) < 1:
        raise ValueError(f"prefetch must be at least 1 row, got {prefetch}")
    prefetch = int(prefetch)
    stage = "growing set" if len(growers) == 1 else "growing sets"
    total = sum(g.limit for g in growers)
    while True:
        active = [g for g in growers if not g.done()]
        if not active:
            break
        report(progress, stage, sum(len(g.members) for g in growers), total, cancel)
        if hasattr(rows, "compute"):
            want = list(dict.fromkeys(g.next_node for g in active if not _is_cached(rows, g.next_node)))
            if want:
                # fill the pass(es) with rows these sets will certainly expand later
                target = -(-len(want) // prefetch) * prefetch
                queues = [deque(g.ahead(prefetch)[1:]) for g in active]
                while len(want) < target and any(queues):
                    for q in queues:
                        while q and (q[0] in want or _is_cached(rows, q[0])):
                            q.popleft()
                        if q and len(want) < target:
                            want.append(q.popleft())
                rows.compute(want, cancel=cancel)
        for g in active:
            g.expand(_row(rows, g.next_node))
    report(progress, stage, sum(len(g.members) for g in growers), sum(len(g.members) for g in growers),
           cancel)
    return [g.result() for g in growers]


def grow_set(rows, seed: int, rule: ThresholdRule, nu: int = 2000, order: str = "bfs",
             allowed: Optional[np.ndarray] = None, seed_score: float = 1.0,
             max_rows: Optional[int] = None, prefetch: Optional[int] = None,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, *,
             shape: Optional[tuple] = None, displacement: Optional[np.ndarray] = None,
             cap: str = "members") -> GrownSet:
    """Grow an interaction set from ``seed``.

    Parameters
    ----------
    rows : HessianRows
        Row provider/cache (anything with ``row(index)``; ``compute(indices)`` and ``in``
        let it batch rows).
    seed : int
        Feature index to start from.
    rule : ThresholdRule
    nu : int
        Largest set size (the seed counts).
    order : {"bfs", "dfs"}
        Breadth-first, or depth-first as the authors' recursion (a member's candidates all
        join before the first of them is expanded).
    allowed : ndarray of bool, optional
        Feature mask; candidates outside it are ignored (e.g. confine a set to its segment).
    seed_score : float
        Attribution of the seed (scales the ``seed-fraction`` threshold).
    max_rows : int, optional
        Stop after expanding this many rows.
    prefetch : int, optional
        Rows computed per pass when a row is missing (default: the provider's batch size):
        the missing row and the next ones the set will expand. Results do not depend on it;
        only speed does.
    shape : tuple (C, H, W), optional
        Image shape, for blurred rules (default: ``rows.shape``).
    displacement : ndarray, optional
        ``|x - b|`` per feature, for ``scale="displacement"`` rules.
    cap : {"members", "authors"}
        ``members``: at most ``nu`` members, the seed included. ``authors``: as the authors'
        code, the seed is not counted and growth stops once more than ``nu`` other features
        joined (``nu + 2`` members in all).
    """
    return grow_sets(rows, [seed], rule, nu, order, [allowed], [seed_score], max_rows,
                     prefetch, progress, cancel, shape=shape, displacement=displacement, cap=cap)[0]
