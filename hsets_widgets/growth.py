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
from typing import Optional

import numpy as np

from .progress import CancelToken, ProgressFn, report

RULES = ("absolute", "seed-fraction", "minmax", "topk")
SIGNS = ("positive", "magnitude")
ORDERS = ("bfs", "dfs")


@dataclass(frozen=True)
class ThresholdRule:
    """Which entries of a Hessian row admit a feature.

    Attributes
    ----------
    kind : {"absolute", "seed-fraction", "minmax", "topk"}
        ``absolute``: entry above ``mu``. ``seed-fraction`` (the paper): entry above
        ``mu * |attribution of the seed|``. ``minmax`` (the authors' code): the row is
        rescaled to [0, 1] by its min and max and entries above ``mu`` pass. ``topk``: the
        ``int(mu)`` largest entries of each row.
    mu : float
    sign : {"positive", "magnitude"}
        Compare the signed entry or its absolute value (``minmax`` always uses the signed
        row, as the authors did).
    """

    kind: str = "topk"
    mu: float = 8.0
    sign: str = "magnitude"

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"unknown threshold rule {self.kind!r}; use one of {', '.join(RULES)}")
        if self.sign not in SIGNS:
            raise ValueError(f"unknown sign {self.sign!r}; use 'positive' or 'magnitude'")
        if self.kind == "topk" and self.mu < 1:
            raise ValueError(f"topk needs mu >= 1 (the number of entries kept per row), got {self.mu}")
        if not np.isfinite(self.mu):
            raise ValueError(f"mu must be finite, got {self.mu}")

    def describe(self) -> str:
        if self.kind == "topk":
            return f"top {int(round(self.mu))} per row ({self.sign})"
        if self.kind == "seed-fraction":
            return f"{self.sign} entry > {self.mu:g} x |seed attribution|"
        if self.kind == "minmax":
            return f"min-max normalised row > {self.mu:g}"
        return f"{self.sign} entry > {self.mu:g}"


def candidates(row: np.ndarray, rule: ThresholdRule, seed_attribution: float = 1.0,
               exclude: Optional[int] = None) -> np.ndarray:
    """Indices passing ``rule`` in ``row``, strongest first (ties by index)."""
    row = np.asarray(row, dtype=np.float64)
    if rule.kind == "minmax":
        lo, hi = row.min(), row.max()
        score = (row - lo) / (hi - lo) if hi > lo else np.zeros_like(row)
    else:
        score = np.abs(row) if rule.sign == "magnitude" else row
    if exclude is not None:
        score = score.copy()
        score[exclude] = -np.inf
    if rule.kind == "topk":
        k = min(int(round(rule.mu)), score.size)  # a slider's 20.999999 means 21
        idx = np.argpartition(-score, k - 1)[:k] if k < score.size else np.arange(score.size)
        idx = idx[np.isfinite(score[idx]) & (score[idx] > 0)]
    else:
        thr = rule.mu * abs(seed_attribution) if rule.kind == "seed-fraction" else rule.mu
        idx = np.flatnonzero(score > thr)
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


class _Grower:
    """One set's growth, advanced a row at a time (so several sets can share row passes)."""

    def __init__(self, seed, rule, nu, order, allowed, seed_attribution, max_rows):
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}; use 'bfs' or 'dfs'")
        if nu < 1:
            raise ValueError(f"nu must be at least 1, got {nu}")
        self.seed = int(seed)
        self.rule, self.nu, self.order = rule, nu, order
        self.allowed, self.seed_attribution, self.max_rows = allowed, seed_attribution, max_rows
        self.members = [self.seed]
        self.in_set = {self.seed}
        self.frontier = deque([self.seed])
        self.steps = []
        self.stopped = None

    def done(self) -> bool:
        if self.stopped is None:
            if not self.frontier:
                self.stopped = "nu" if len(self.members) >= self.nu else "exhausted"
            elif len(self.members) >= self.nu:
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
        ceil(remaining / k) more rows are (and BFS takes them in frontier order)."""
        need = prefetch
        if self.rule.kind == "topk":
            need = min(prefetch, max(1, -(-(self.nu - len(self.members)) // int(round(self.rule.mu)))))
        if self.max_rows is not None:
            need = min(need, max(1, self.max_rows - len(self.steps)))
        n = min(need, len(self.frontier))
        if self.order == "bfs":
            return [self.frontier[i] for i in range(n)]
        return [self.frontier[-1 - i] for i in range(n)]

    def expand(self, row) -> None:
        node = self.frontier.popleft() if self.order == "bfs" else self.frontier.pop()
        added = []
        for i in candidates(row, self.rule, self.seed_attribution, exclude=node):
            i = int(i)
            if i in self.in_set or (self.allowed is not None and not self.allowed[i]):
                continue
            if len(self.members) >= self.nu:
                break
            self.members.append(i)
            self.in_set.add(i)
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
              allowed=None, seed_attributions=None, max_rows: Optional[int] = None,
              prefetch: Optional[int] = None, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None) -> list:
    """Grow the sets of several seeds side by side, sharing Hessian-row passes.

    Each set grows exactly as :func:`grow_set` grows it alone (same rows, same order, same
    members); only the scheduling differs: every pass computes the row each unfinished set
    expands next, filled up to a multiple of ``prefetch`` with rows those sets are certain
    to expand later. A batched pass costs far less per row than a pass of one row, so
    growing five sets together takes fewer, fuller passes.

    Parameters
    ----------
    seeds : sequence of int
    allowed : sequence of (ndarray of bool or None), optional
        One feature mask per seed (see :func:`grow_set`).
    seed_attributions : sequence of float, optional
        One attribution per seed (for the ``seed-fraction`` rule).

    Other parameters are those of :func:`grow_set`. Returns one :class:`GrownSet` per seed.
    """
    seeds = [int(s) for s in seeds]
    allowed = list(allowed) if allowed is not None else [None] * len(seeds)
    attrs = list(seed_attributions) if seed_attributions is not None else [1.0] * len(seeds)
    if not len(allowed) == len(attrs) == len(seeds):
        raise ValueError(f"got {len(seeds)} seeds, {len(allowed)} masks and {len(attrs)} seed "
                         "attributions; give one of each per seed")
    growers = [_Grower(s, rule, nu, order, a, sa, max_rows) for s, a, sa in zip(seeds, allowed, attrs)]
    prefetch = max(1, int(prefetch or getattr(rows, "batch_size", 8)))
    stage = "growing set" if len(growers) == 1 else "growing sets"
    total = nu * len(growers)
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
             allowed: Optional[np.ndarray] = None, seed_attribution: float = 1.0,
             max_rows: Optional[int] = None, prefetch: Optional[int] = None,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> GrownSet:
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
    seed_attribution : float
        Attribution of the seed (scales the ``seed-fraction`` threshold).
    max_rows : int, optional
        Stop after expanding this many rows.
    prefetch : int, optional
        Rows computed per pass when a row is missing (default: the provider's batch size):
        the missing row and the next ones the set will expand. Results do not depend on it;
        only speed does.
    """
    return grow_sets(rows, [seed], rule, nu, order, [allowed], [seed_attribution], max_rows,
                     prefetch, progress, cancel)[0]
