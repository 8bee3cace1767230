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


def grow_set(rows, seed: int, rule: ThresholdRule, nu: int = 2000, order: str = "bfs",
             allowed: Optional[np.ndarray] = None, seed_attribution: float = 1.0,
             max_rows: Optional[int] = None, prefetch: Optional[int] = None,
             progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> GrownSet:
    """Grow an interaction set from ``seed``.

    Parameters
    ----------
    rows : HessianRows
        Row provider/cache (anything with ``rows(indices)`` and ``compute(indices)``).
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
        Rows computed per pass ahead of the expansion (default: the provider's batch size).
        Results do not depend on it; only speed does.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; use 'bfs' or 'dfs'")
    if nu < 1:
        raise ValueError(f"nu must be at least 1, got {nu}")
    seed = int(seed)
    members = [seed]
    in_set = {seed}
    frontier = deque([seed])
    steps = []
    stopped = "exhausted"
    prefetch = prefetch or getattr(rows, "batch_size", 8)
    budget = max_rows if max_rows is not None else np.inf
    while frontier:
        if len(members) >= nu:
            stopped = "nu"
            break
        if len(steps) >= budget:
            stopped = "max_rows"
            break
        report(progress, "growing set", len(members), nu, cancel)
        # compute the next rows in one batched pass (same result as one at a time)
        # never prefetch more rows than can still be needed: with a top-k rule each row
        # adds at most k members, so at least ceil(remaining / k) more rows are expanded
        need = prefetch
        if rule.kind == "topk":
            need = min(prefetch, max(1, -(-(nu - len(members)) // int(round(rule.mu)))))
        if max_rows is not None:
            need = min(need, max(1, max_rows - len(steps)))
        if order == "bfs":
            ahead = [frontier[i] for i in range(min(need, len(frontier)))]
            node = frontier.popleft()
        else:
            ahead = [frontier[-1 - i] for i in range(min(need, len(frontier)))]
            node = frontier.pop()
        if hasattr(rows, "compute"):
            rows.compute(ahead, cancel=cancel)
        row = rows.row(node).numpy() if hasattr(rows, "row") else np.asarray(rows[node])
        added = []
        for i in candidates(row, rule, seed_attribution, exclude=node):
            i = int(i)
            if i in in_set or (allowed is not None and not allowed[i]):
                continue
            if len(members) >= nu:
                break
            members.append(i)
            in_set.add(i)
            added.append(i)
        steps.append(GrowthStep(node, added))
        if order == "bfs":
            frontier.extend(added)
        else:
            frontier.extend(reversed(added))
    else:
        stopped = "nu" if len(members) >= nu else "exhausted"
    report(progress, "growing set", len(members), len(members), cancel)
    return GrownSet(seed, np.asarray(members, dtype=np.int64), steps, stopped, rule, nu, order)
