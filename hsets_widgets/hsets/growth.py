"""Growing an interaction set from a seed by following Hessian rows.

Starting from the seed, the row of each member proposes candidates (features whose row
entry passes the threshold); new candidates join the set and are expanded in turn,
breadth-first or depth-first, until nothing new passes or the set has ``nu`` members.
Every step is recorded in a :class:`GrowthTrace`, so the merge can be replayed, and rows
come from a :class:`~hsets_widgets.hsets.hessian.HessianRows` cache, so regrowing with another
``mu`` or ``nu`` only computes rows never seen before.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Protocol, runtime_checkable

import numpy as np

from ..plumbing.progress import CancelToken, ProgressFn, report
from .thresholds import ThresholdRule, candidates, floor_value, topk_count

GROWTH_ORDERS = ("bfs", "dfs")


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


def check_nu(nu) -> int:
    """``nu`` as a whole number, or a clear error when it is not one >= 1."""
    if isinstance(nu, bool) or not isinstance(nu, (int, np.integer)) or nu < 1:
        raise ValueError(f"nu must be a whole number >= 1, got {nu!r}")
    return int(nu)


def split_nu(nu: int, masses, total_mass: float, n_shares: int, areas=None) -> list:
    """The largest size of each set when ``nu`` members are shared by attribution mass.

    Set ``k`` gets ``nu * masses[k] / total_mass`` members (``nu / n_shares`` each when the
    total is not positive), at least 1 and at most ``areas[k]`` when given (the features of
    its segment, for sets confined to it).
    """
    nu = check_nu(nu)
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
        check_nu(nu)
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
        self.floor = 0.0     # rule.floor in row units, from the seed's row
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
            self.floor = floor_value(row, self.rule, self.seed)
        added = []
        for i in candidates(row, self.rule, self.seed_score, exclude=node, shape=self.shape,
                            blocked=self.blocked, displacement=self.displacement,
                            floor_value=self.floor):
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


@runtime_checkable
class RowSource(Protocol):
    """Where growth reads Hessian rows: ``row(index)`` and ``index in source``.

    :class:`~hsets_widgets.hsets.hessian.HessianRows` is one, and also a :class:`ComputingRowSource`;
    its ``cached_only()`` view is one that raises
    :class:`~hsets_widgets.hsets.hessian.RowNotCached` for a row never computed; :class:`MatrixRows`
    wraps rows computed elsewhere.
    """

    def row(self, index: int):
        """Row ``index`` (tensor or array, one entry per feature)."""
        ...

    def __contains__(self, index: int) -> bool:
        ...


@runtime_checkable
class ComputingRowSource(RowSource, Protocol):
    """A :class:`RowSource` that computes missing rows in batched passes."""

    batch_size: int

    def compute(self, indices, cancel: Optional[CancelToken] = None) -> int:
        """Compute (and keep) the rows of ``indices`` not computed yet."""
        ...


class MatrixRows:
    """A :class:`RowSource` over a precomputed ``(n_features, n_features)`` matrix (or any
    sequence of rows), e.g. an exact Hessian in a test.
    """

    def __init__(self, matrix, shape: Optional[tuple] = None):
        self.matrix = matrix
        self.shape = shape

    def row(self, index: int) -> np.ndarray:
        """Row ``index`` of the matrix."""
        return np.asarray(self.matrix[int(index)])

    def __contains__(self, index: int) -> bool:
        return 0 <= int(index) < len(self.matrix)


def as_row_source(rows) -> RowSource:
    """``rows`` itself when it is a :class:`RowSource`, else a :class:`MatrixRows` over it."""
    return rows if isinstance(rows, RowSource) else MatrixRows(rows)


def _fetch_next_rows(rows: ComputingRowSource, active: list, prefetch: int, cancel) -> None:
    """Compute the row each active set expands next, in passes filled up to a multiple of
    ``prefetch`` with rows those sets are certain to expand later.
    """
    want = list(dict.fromkeys(g.next_node for g in active if g.next_node not in rows))
    if not want:
        return
    target = -(-len(want) // prefetch) * prefetch
    queues = [deque(g.ahead(prefetch)[1:]) for g in active]
    while len(want) < target and any(queues):
        for q in queues:
            while q and (q[0] in want or q[0] in rows):
                q.popleft()
            if q and len(want) < target:
                want.append(q.popleft())
    rows.compute(want, cancel=cancel)


def _per_seed(values, default, n: int, what: str) -> list:
    out = list(values) if values is not None else [default] * n
    if len(out) != n:
        raise ValueError(f"got {n} seeds and {len(out)} {what}; give one per seed")
    return out


def grow_sets(rows, seeds, rule: ThresholdRule, nu: int = 2000, order: str = "bfs",
              allowed=None, seed_scores=None, max_rows: Optional[int] = None,
              prefetch: Optional[int] = None, progress: Optional[ProgressFn] = None,
              cancel: Optional[CancelToken] = None, *, shape: Optional[tuple] = None,
              displacement: Optional[np.ndarray] = None, cap: str = "members") -> list:
    """Grow the sets of several seeds side by side, sharing Hessian-row passes.

    Each set grows exactly as :func:`grow_set` grows it alone (same rows, same order, same
    members); only the scheduling differs: every pass computes the row each unfinished set
    expands next, filled up to a multiple of ``prefetch`` with rows those sets are certain
    to expand later, so five sets grown together take fewer, fuller passes.

    ``nu``, ``allowed`` and ``seed_scores`` are one value for every set or one per seed
    (largest size, feature mask, the seed's attribution for the ``seed-fraction`` rule);
    the other parameters are those of :func:`grow_set`. Returns one :class:`GrownSet` per
    seed.
    """
    rows = as_row_source(rows)
    seeds = [int(s) for s in seeds]
    allowed = _per_seed(allowed, None, len(seeds), "masks")
    scores = _per_seed(seed_scores, 1.0, len(seeds), "seed scores")
    nus = _per_seed(nu if isinstance(nu, (list, tuple, np.ndarray)) else None, nu, len(seeds), "set sizes")
    shape = shape if shape is not None else getattr(rows, "shape", None)
    growers = [_Grower(s, rule, n, order, a, sa, max_rows, shape, displacement, cap)
               for s, n, a, sa in zip(seeds, nus, allowed, scores)]
    prefetch = int(getattr(rows, "batch_size", 8) if prefetch is None else prefetch)
    if prefetch < 1:
        raise ValueError(f"prefetch must be at least 1 row, got {prefetch}")
    stage = "growing set" if len(growers) == 1 else "growing sets"
    computing = isinstance(rows, ComputingRowSource)   # a Protocol check is not free: once
    while active := [g for g in growers if not g.done()]:
        # a set counts its cap nu while it grows and its final size once it stops, so the total
        # only shrinks when a set stops early and the bar's fraction never goes back
        total = sum(len(g.members) if g.done() else g.limit for g in growers)
        report(progress, stage, sum(len(g.members) for g in growers), total, cancel)
        if computing:
            _fetch_next_rows(rows, active, prefetch, cancel)
        for g in active:
            g.expand(np.asarray(rows.row(g.next_node)))   # a CPU tensor as it is: no copy
    grown = sum(len(g.members) for g in growers)
    report(progress, stage, grown, grown, cancel)
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
    rows : RowSource or array
        Where rows come from (:class:`RowSource`; a :class:`ComputingRowSource` such as
        :class:`~hsets_widgets.hsets.hessian.HessianRows` computes missing rows in batches; an
        array of rows is wrapped in :class:`MatrixRows`).
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
