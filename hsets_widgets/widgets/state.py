"""The one state object every Explorer widget observes.

:class:`ExplorerState` is a traitlets ``HasTraits`` holding the
:class:`~hsets_widgets.hsets.explain.Explainer` and everything the user is looking at: the seed,
the growth settings (``mu``, ``nu``, threshold rule, sign, order), the grown set and its
value, the animation step, the sets kept for the explanation, and the status of background
work (``busy``, ``stage``, ``progress``, ``error``). Widgets set its traits (a click sets
the seed, a slider sets ``mu``) and observe them (the canvas redraws when ``grown``
changes); none of them talks to another widget. What one view alone needs (the image
view's hover read-out, a panel's "out of date" note) lives in that view.

Regrowing after a settings change first tries the Hessian-row cache alone, in the calling
thread (a slider move answers in milliseconds); only when a row is missing does the work go
to the :class:`~hsets_widgets.widgets.runner.BackgroundRunner`, with progress and cancel.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from traitlets import (
    Bool,
    Enum,
    Float,
    HasTraits,
    Instance,
    Int,
    List,
    TraitError,
    Tuple,
    Unicode,
    observe,
    validate,
)

from ..hsets.explain import Explainer
from ..hsets.explanation import InteractionSet
from ..hsets.growth import GROWTH_ORDERS, GrownSet
from ..hsets.hessian import RowNotCached
from ..hsets.idg import SetValue
from ..hsets.presets import get_config
from ..hsets.seeds import Seed
from ..hsets.thresholds import SIGNS, THRESHOLD_RULES, ThresholdRule, rule_mu
from ..methods.protocol import MapWithSets, PixelSet
from ..methods.registry import METHODS, attribute_sets
from ..plumbing.common import to_numpy
from .runner import BackgroundRunner, Job

_DEFAULTS = get_config("default")


def _count(n) -> str:
    return "one automatic seed per segment" if n is None else f"{n} automatic seeds"


def describe_error(err: BaseException) -> str:
    """``Type: message`` of an exception, for the status bar."""
    msg = str(err).strip() or type(err).__name__
    return f"{type(err).__name__}: {msg}"


class ExplorerState(HasTraits):
    """Shared state of the Explorer widgets (see the module docstring).

    Parameters
    ----------
    explainer : Explainer
    background : bool
        Run expensive work in a background thread (default). ``False`` runs it inline,
        which blocks but is handy in scripts.

    Attributes (traits)
    -------------------
    ready : bool
        Attribution and segmentation are computed (clicks then answer from the main thread).
    seed : Seed or None
        Seed of the current set.
    pending_seed_yx : tuple or None
        A clicked pixel whose set is being grown in the background.
    auto_seeds : list of Seed
        The automatic seeds (one per segment, best first).
    mu, nu, threshold, sign, order
        Growth settings (see :class:`~hsets_widgets.hsets.thresholds.ThresholdRule`).
    grown : GrownSet or None
        The current set, with its merge trace.
    value : SetValue or None
        Its value ``v(I)`` (IDG over subsets).
    step : int
        Animation step: the set shown is ``grown.members_after(step)``.
    sets : list of InteractionSet
        Sets kept in the explanation (heatmap, export, ROAD).
    busy, stage, progress, status, error
        Background work: running?, what it does, fraction done, last message, last error.
    n_rows : int
        Hessian rows computed so far (the cache size).
    revision : int
        Incremented whenever ``grown`` is replaced.
    method, method_result : str, MapWithSets or None
        A registered method (:data:`~hsets_widgets.methods.registry.METHODS`) shown beside
        H-Sets, and its map and sets once computed (:meth:`show_method`).
    tested_set : tuple or None
        ``(name, PixelSet)``: a set of another method put through the Interactions tab.
    """

    explainer = Instance(Explainer)
    ready = Bool(False)
    seed = Instance(Seed, allow_none=True)
    pending_seed_yx = Tuple(Int(), Int(), default_value=None, allow_none=True)
    auto_seeds = List(Instance(Seed))
    # defaults: the default preset's (an explainer's own settings replace them in __init__)
    mu = Float(_DEFAULTS.mu)
    nu = Int(_DEFAULTS.nu)
    threshold = Unicode(_DEFAULTS.threshold)     # a name in growth.THRESHOLD_RULES (checked below)
    sign = Enum(SIGNS, default_value=_DEFAULTS.sign)
    order = Enum(GROWTH_ORDERS, default_value=_DEFAULTS.order)
    grown = Instance(GrownSet, allow_none=True)
    value = Instance(SetValue, allow_none=True)
    step = Int(0)
    sets = List(Instance(InteractionSet))
    busy = Bool(False)
    stage = Unicode("")
    progress = Float(0.0)
    status = Unicode("")
    error = Unicode("")
    n_rows = Int(0)
    revision = Int(0)
    method = Unicode("")                # a registered method shown as a layer and beside the image
    method_result = Instance(MapWithSets, allow_none=True)   # its map and sets, once computed
    # (name, PixelSet) the Interactions tab tests instead of the current set
    tested_set = Tuple(Unicode(), Instance(PixelSet), default_value=None, allow_none=True)

    def __init__(self, explainer: Explainer, background: bool = True, **kwargs):
        self.lock = threading.RLock()
        self._requested = None      # growth key last asked for
        self._applied = None        # growth key of `grown`
        self._error_kind = None     # the kind of background job the shown error came from
        self.last_sync_seconds = float("nan")
        self.method_cache = {}      # method name -> MapWithSets, for this image
        c = explainer.config
        self.runner = BackgroundRunner(self.lock, self._job_started, self._job_progress,
                                       self._job_finished, synchronous=not background)
        kwargs = {"mu": c.mu, "nu": c.nu, "threshold": c.threshold, "sign": c.sign,
                  "order": c.order, **kwargs}
        super().__init__(explainer=explainer, **kwargs)
        self.status = (f"{explainer.classifier.name} predicts '{explainer.class_name}' "
                       f"(p = {explainer.probability:.2f})")

    @classmethod
    def from_image(cls, image, model=None, target=None, *, preset="default", segmenter="auto",
                   device=None, background: bool = True, **overrides) -> ExplorerState:
        """Build the :class:`~hsets_widgets.hsets.explain.Explainer` and its state."""
        return cls(Explainer(image, model, target, preset=preset, segmenter=segmenter, device=device, **overrides),
                   background=background)

    # ---- read-only helpers -----------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """``(3, H, W)`` of the model input."""
        return self.explainer.shape

    @property
    def params(self) -> dict:
        """Current growth settings as keyword arguments of ``Explainer.grow``."""
        return {"mu": rule_mu(self.threshold, self.mu), "nu": int(self.nu), "threshold": self.threshold,
                "sign": self.sign, "order": self.order}

    @property
    def threshold_rule(self) -> ThresholdRule:
        """The threshold rule of the current slider settings."""
        p = self.params
        return self.explainer.threshold_rule(p["threshold"], p["mu"], p["sign"])

    @property
    def n_steps(self) -> int:
        """Number of merge steps of the current set."""
        return len(self.grown.steps) if self.grown is not None else 0

    def displayed_members(self) -> np.ndarray:
        """Members of the current set after ``step`` merge steps."""
        if self.grown is None:
            return np.zeros(0, np.int64)
        return self.grown.members_after(min(self.step, self.n_steps))

    def step_info(self, step: Optional[int] = None):
        """The :class:`~hsets_widgets.hsets.growth.GrowthStep` that led to ``step`` (None at 0)."""
        step = self.step if step is None else step
        if self.grown is None or step <= 0:
            return None
        return self.grown.steps[min(step, self.n_steps) - 1]

    def seed_row_image(self) -> Optional[np.ndarray]:
        """The seed's Hessian row as an ``(H, W)`` map (channels summed), if cached."""
        if self.seed is None:
            return None
        rows = self.explainer.rows
        if self.seed.index not in rows:
            return None
        img = rows.pixel_image(self.seed.index)
        return img.sum(0) if img.ndim == 3 else img

    # ---- actions -----------------------------------------------------------------------
    def prepare(self, grow_first: bool = True) -> Job:
        """Compute IG, the segmentation and the automatic seeds in the background; then
        grow the best seed's set (unless the user picked a seed meanwhile).
        """
        ex = self.explainer

        def work(progress, cancel):
            self.ensure_ready(progress, cancel)
            return ex.seeds()

        def apply(seeds):
            self._mark_ready()
            self.auto_seeds = list(seeds)
            if grow_first and seeds and self._requested is None:
                self._request_growth(seeds[0])

        return self.submit("prepare", "Preparing (Integrated Gradients, segmentation, seeds)", work, apply)

    def select_seed(self, y: int, x: int) -> None:
        """Make pixel ``(y, x)`` the seed and grow its set (a human-guided set)."""
        _, h, w = self.shape
        y, x = int(y), int(x)
        if not (0 <= y < h and 0 <= x < w):
            self.error = f"pixel ({y}, {x}) is outside the {h}x{w} image"
            return
        with self.lock:
            self.pending_seed_yx = (y, x)
            if self.ready:
                try:
                    seed = self.explainer.seed_at(y, x)
                except Exception as err:  # noqa: BLE001
                    self._fail(f"Seed at ({y}, {x})", err)
                    return
                self._request_growth(seed)
            else:
                self._request_growth(None, yx=(y, x))

    def regrow(self, force: bool = False) -> None:
        """Grow the current seed's set again with the current settings."""
        if self.seed is not None:
            self._request_growth(self.seed, force=force)

    def add_current_set(self):
        """Keep the current set in the explanation (replacing a set with the same seed)."""
        with self.lock:
            if self.grown is None or self.seed is None:
                self.error = "no current set to add: click a pixel first"
                return None
            try:
                # the value the current set already has: the same stream (keyed by its seed)
                # would draw the same subsets again
                s = self.explainer.interaction_set(self.seed, self.grown, value=self.value)
            except Exception as err:  # noqa: BLE001
                self._fail("Adding the set", err)
                return None
            kept = [t for t in self.sets if t.seed != s.seed]
            self.sets = kept + [s]
            self.status = f"Kept the set of pixel {s.seed_yx} ({len(s)} pixels); {len(self.sets)} set(s)"
            return s

    def remove_set(self, index: int) -> None:
        """Remove kept set ``index``."""
        with self.lock:
            sets = list(self.sets)
            if 0 <= index < len(sets):
                del sets[index]
                self.sets = sets

    def clear_sets(self) -> None:
        """Remove every kept set."""
        with self.lock:
            self.sets = []

    def explain(self, k: Optional[int] = None) -> Job:
        """Grow ``k`` automatic sets (default ``config.n_sets``) with the current settings, in
        the background, and keep them (what :func:`~hsets_widgets.hsets.explain.explain` does) after
        the sets the user kept.
        """
        ex = self.explainer
        params = self.params

        def work(progress, cancel):
            self.ensure_ready(progress, cancel)
            seeds = ex.seeds(k)
            def sub(stage, done, total):
                progress(f"{len(seeds)} sets: {stage}", done, total)
            out = ex.grow_and_value(seeds, progress=sub, cancel=cancel, **params)
            progress("sets", len(seeds), len(seeds))
            return seeds, out

        def apply(result):
            seeds, sets = result
            self._mark_ready()
            self.auto_seeds = list(seeds)
            new = {s.seed for s in sets}
            # sets the user kept stay (first); automatic ones replace sets with the same seed
            self.sets = [s for s in self.sets if s.seed not in new] + sets

        label = "Explaining with " + _count(ex.config.n_sets if k is None else k)
        return self.submit("explain", label, work, apply)

    def keep_sets_of(self, seeds) -> Job:
        """Grow ``seeds`` with the current settings in the background (as the sweep grows them,
        :meth:`~hsets_widgets.hsets.explain.Explainer.grow_and_value`) and make them the kept sets.
        """
        ex = self.explainer
        seeds = list(seeds)
        params = self.params

        def work(progress, cancel):
            self.ensure_ready(progress, cancel)
            return ex.grow_and_value(seeds, progress=progress, cancel=cancel, **params)

        def apply(sets):
            self.sets = list(sets)
            self.status = f"Kept {len(sets)} set(s) grown at mu = {params['mu']:g}"

        return self.submit("explain", f"Regrowing {len(seeds)} set(s) at mu = {params['mu']:g}", work, apply)

    def method_map(self, name: str, progress=None, cancel=None):
        """The :class:`~hsets_widgets.methods.protocol.MapWithSets` of method ``name`` for this image,
        computed once and shared by every view (the method layer, the ROAD tab, the Interactions
        tab): ``ig`` is the explainer's own IG. Runs in the caller's thread; views call it from
        background jobs.
        """
        hit = self.cached_method(name)
        if hit is not None:
            return hit
        ex = self.explainer
        if name == "ig":
            result = MapWithSets(to_numpy(ex.attribution().attribution).sum(0))
        else:
            result = attribute_sets(ex.x.detach(), ex.classifier, ex.target, method=name, seed=ex.config.seed,
                                    progress=progress, cancel=cancel)
        return self.provide_method(name, result)      # a concurrent job's equal map may be there first

    def cached_method(self, name: str):
        """Method ``name``'s map for this image if it is computed (or provided) already, else None."""
        with self.lock:
            return self.method_cache.get(name)

    def provide_method(self, name: str, result):
        """Use ``result`` (a MapWithSets, e.g. read from an evaluation folder) as method ``name``'s
        map for this image, unless one is there already; returns the one kept.
        """
        with self.lock:
            return self.method_cache.setdefault(name, result)

    def show_method(self, name: str):
        """Show the map (and sets) of the registered method ``name`` ("" hides it): computed once
        per image in the background (progress, cancel) by :meth:`method_map`, then
        ``method_result`` is set.
        """
        name = str(name or "")
        if name and name not in METHODS:
            self.error = f"unknown method {name!r}; use one of {', '.join(METHODS)}"
            return None
        self.method = name
        if not name:
            self.method_result = None
            return None
        hit = self.cached_method(name)
        if hit is not None:
            self.method_result = hit
            return None
        self.method_result = None

        def work(progress, cancel):
            self.ensure_ready(progress, cancel)
            return self.method_map(name, progress, cancel)

        def apply(result):
            if self.method == name:          # the user may have picked another one meanwhile
                self.method_result = result

        return self.submit("method", f"Computing the {name} map (once per image)", work, apply, key=name)

    def test_pixel_set(self, name: str, pixel_set) -> None:
        """Put ``pixel_set`` (a :class:`~hsets_widgets.metrics.interactions.PixelSet` of another
        method) through the Interactions tab, named ``name``.
        """
        self.tested_set = (str(name), pixel_set)

    def cancel(self) -> int:
        """Cancel the running background job (and drop waiting ones)."""
        return self.runner.cancel()

    def wait(self, timeout: Optional[float] = 120.0) -> bool:
        """Wait for background work to finish (scripts and tests)."""
        return self.runner.wait(timeout)

    def submit(self, kind: str, label: str, work, apply=None, key=None) -> Job:
        """Run ``work(progress, cancel)`` in the background (for views with their own jobs)."""
        return self.runner.submit(Job(kind, label, work, apply, key=key))

    def heatmap(self, sets=None) -> np.ndarray:
        """H-Sets heatmap of ``sets`` (default: the kept sets)."""
        sets = self.sets if sets is None else sets
        _, h, w = self.shape
        return self.explainer.heatmap(sets) if sets else np.zeros((h, w))

    def current_interaction_set(self):
        """The current grown set as an :class:`~hsets_widgets.hsets.explanation.InteractionSet`."""
        if self.grown is None or self.seed is None:
            return None
        # `grown` and `value` are always set together (_apply_growth): reuse the value
        return self.explainer.interaction_set(self.seed, self.grown, value=self.value)

    def shown_sets(self) -> list:
        """What the views show as the explanation: the kept sets plus the current set (unless
        it is kept already).
        """
        sets = list(self.sets)
        cur = self.current_interaction_set() if self.grown is not None else None
        if cur is not None and not any(s.seed == cur.seed and len(s) == len(cur)
                                       and np.array_equal(s.members, cur.members) for s in sets):
            sets.append(cur)
        return sets

    def explanation(self):
        """The kept sets (or the current one) as an :class:`~hsets_widgets.hsets.explanation.Explanation`."""
        sets = list(self.sets)
        if not sets:
            cur = self.current_interaction_set()
            sets = [cur] if cur is not None else []
        return self.explainer.explanation(sets)

    # ---- growth ------------------------------------------------------------------------
    @validate("threshold")
    def _known_rule(self, proposal):
        if proposal["value"] not in THRESHOLD_RULES:
            raise TraitError(f"unknown threshold rule {proposal['value']!r}; use one of "
                             f"{', '.join(THRESHOLD_RULES)}")
        return proposal["value"]

    @observe("mu", "nu", "threshold", "sign", "order")
    def _settings_changed(self, change):
        self.regrow()

    @observe("step")
    def _clamp_step(self, change):
        n = self.n_steps
        if change["new"] < 0 or change["new"] > n:
            self.step = min(max(change["new"], 0), n)

    def _key(self, seed: Optional[Seed], yx=None) -> tuple:
        p = self.params
        where = (seed.index, tuple(seed.yx)) if seed is not None else ("pixel", tuple(yx))
        return where + (p["mu"], p["nu"], p["threshold"], p["sign"], p["order"])

    def _request_growth(self, seed: Optional[Seed], yx=None, force: bool = False) -> None:
        """Grow ``seed``'s set (or pixel ``yx``'s, before the seeds are ready) with the current
        settings: from cached rows at once when it can, else in the background.
        """
        with self.lock:
            key = self._key(seed, yx)
            if not force and key == self._requested:
                if key == self._applied:
                    self.error = ""     # back to the settings of the set shown: nothing is wrong
                return
            self._requested = key
            params = self.params
            try:
                self.explainer.threshold_rule(params["threshold"], params["mu"], params["sign"])
                if params["nu"] < 1:
                    raise ValueError(f"nu must be at least 1, got {params['nu']}")
            except ValueError as err:
                self._fail("Growth settings", err)
                return
            if seed is not None and self.ready and self._grow_from_cache(key, seed, params):
                return
        self._grow_in_background(key, seed, yx, params)

    def _grow_from_cache(self, key, seed: Seed, params: dict) -> bool:
        """Grow and value the set from cached rows alone, in this thread; False when a row is
        missing (the background must compute it). A failure is reported and counts as done.
        """
        t0 = time.perf_counter()
        try:
            grown = self.explainer.grow(seed, **params, compute=False)
            value = self.explainer.value(grown.members)
        except RowNotCached:
            return False
        except Exception as err:  # noqa: BLE001
            self._fail(f"Growing the set of pixel {tuple(seed.yx)}", err)
            return True
        self.runner.cancel("grow", superseded=True)   # background growth is stale
        self._apply_growth(key, seed, grown, value)
        self.last_sync_seconds = time.perf_counter() - t0
        self.status = (f"Set of pixel {tuple(seed.yx)}: {len(grown)} pixels from "
                       f"{grown.rows_used} cached rows ({self.last_sync_seconds * 1e3:.0f} ms)")
        return True

    def _grow_in_background(self, key, seed, yx, params) -> None:
        ex = self.explainer
        where = tuple(seed.yx) if seed is not None else tuple(yx)

        def work(progress, cancel):
            self.ensure_ready(progress, cancel)
            s = seed if seed is not None else ex.seed_at(*yx)
            grown = ex.grow(s, progress=progress, cancel=cancel, **params)
            return s, grown, ex.value(grown.members)

        def apply(result):
            self._mark_ready()
            if key != self._requested:
                return                  # settings moved on while this ran
            s, grown, value = result
            self._apply_growth(key, s, grown, value)

        self.submit("grow", f"Growing the set of pixel {where}", work, apply, key=key)

    def _apply_growth(self, key, seed, grown, value) -> None:
        with self.lock, self.hold_trait_notifications():
            self._applied = key
            self.seed = seed
            self.grown = grown
            self.value = value
            self.step = len(grown.steps)
            self.pending_seed_yx = None
            self.error = ""
            self.n_rows = self.explainer.rows.n_computed
            self.revision += 1

    # ---- background plumbing -------------------------------------------------------------
    def ensure_ready(self, progress=None, cancel=None) -> None:
        """Compute (or take from cache) IG, the segmentation and the seed attribution."""
        ex = self.explainer
        ex.attribution(progress, cancel)
        ex.segment(progress)
        ex.seed_map()

    def _mark_ready(self) -> None:
        if not self.ready:
            self.ready = True

    def _fail(self, what: str, err: BaseException, key=None) -> None:
        self.error = f"{what} failed: {describe_error(err)}"
        if key is None or key == self._requested:
            self._forget_request()

    def _forget_request(self) -> None:
        """The request in flight failed or was cancelled: the next identical one may try again."""
        self.pending_seed_yx = None
        self._requested = self._applied

    def _count_rows(self) -> None:
        rows = self.explainer.cached("rows")  # never create the cache from a job callback
        if rows is not None:
            self.n_rows = rows.n_computed

    # the runner's callbacks: they run in the runner's thread, so they take the lock
    def _job_started(self, job: Job) -> None:
        with self.lock:
            self.busy = True
            self.progress = 0.0
            self.stage = job.label

    def _job_progress(self, job: Job, stage: str, done: int, total: int) -> None:
        with self.lock:
            self.progress = float(done) / total if total else 0.0
            self.stage = f"{job.label}: {stage} {done}/{total}"
            self._count_rows()

    def _job_finished(self, job: Job) -> None:
        with self.lock:
            self._count_rows()
            if job.outcome == "done":
                self.progress = 1.0
                self.status = f"{job.label}: done in {job.seconds:.1f} s"
                # a new set answers every earlier error; another job only its own kind's
                if job.kind in ("prepare", "grow", "explain") or job.kind == self._error_kind:
                    self.error = ""
                    self._error_kind = None
            elif job.outcome == "cancelled":
                if not job.superseded:
                    self.status = f"Cancelled: {job.label} (earlier results are kept)"
                    if job.kind == "grow" and job.key == self._requested:
                        self._forget_request()
            elif job.outcome == "failed":
                self._fail(job.label, job.error, job.key)
                self._error_kind = job.kind
                self.status = "Error (earlier results are kept; see the message)"
            self.stage = ""
            self.busy = self.runner.waiting > 0
