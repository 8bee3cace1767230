"""Settings of one H-Sets run, and the named presets.

``default``
    Chosen by ``bench/faithfulness.py`` on the tuning half of its photos (the measurements and
    the variants that lost are in ``bench/FAITHFULNESS.md``): softplus(10) curvature, pixel
    features, IG (64 adaptive path steps) seeds in the 5 segments with the most positive
    attribution, sets of at most ``nu = 2000`` pixels grown inside the seed's segment,
    breadth-first, each row adding the 256 strongest new pixels of its magnitude smoothed
    over 2 pixels (compact sets in a few rows), Bernoulli subset sampling with a normalised
    value (the mean of ``d`` over subsets), members painted from 1.5x (the seed and the
    pixels that joined first) to 0.5x their set's value. About a tenth of the image in
    5 sets, in well under a minute on a laptop CPU.
``paper``
    The workshop paper as written: IG seeds, threshold ``mu = 0.5 x |IG of the seed|`` on
    positive Hessian entries, recursive (depth-first) merge, ``nu = 2000``, signed IDG set
    score, value by random subset sampling. The paper names no curvature option although a
    ReLU network's Hessian is zero; softplus(10) is used and said so.
``authors-code``
    What the authors' public code (GitHub ayushimehrotra/H-Sets) does, which differs from
    the paper text: their surrogate ReLU (exact forward, derivative ``x / sqrt(x^2 + tau)``
    for ``x > 0``, tau = 1e-3) in place of every ReLU *and ReLU6* while Hessians are taken,
    so a ReLU6's clip at 6 is dropped there (``keep_clip=False``); the raw logit of the
    argmax class; channel-pixel features; plain-gradient seeds (features walked by
    descending gradient, the first one in a segment not used yet); each Hessian row min-max
    normalised and entries above 0.5 kept; depth-first recursion that stops once more than
    ``nu = 2000`` features besides the seed joined (``cap="authors"``); sets not confined
    to the seed's mask; the network's zero input as baseline, 31 path points including both
    ends, the authors' absolute-gradient set score, and as value the plain sum of that score
    over 30 Bernoulli subsets; sets painted on their pixels and summed.
``interactions``
    The interaction mode: the default with a row floor (``row_floor = 0.3``: only entries
    above 0.3 x the seed row's largest |H| admit a pixel) and growth across segments
    (``within_mask = False``). On planted interactions it recovers every pair, triple and
    self-interacting region with recall and precision 1.00 (bench/INTERACTIONS.md), where the
    default, confined to the seed's segment and padded by its top-k rule, cannot.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np

from ..model.scores import SCORE_KINDS
from ..plumbing.memory import parse_bytes
from .curvature import RAMPS, CurvatureSpec
from .growth import CAPS, GROWTH_ORDERS, NU_SPLITS
from .heatmap import COMBINES, MEMBER_WEIGHTS, PAINTS
from .hessian import CPU_MAX_BATCH, FEATURES, HESSIAN_METHODS
from .idg import SAMPLERS, SET_SCORES, VALUE_KINDS
from .integrated_gradients import BASELINE_FNS, DEFAULT_RULE, DEFAULT_STEPS
from .integrated_gradients import RULES as IG_RULES
from .seeds import SEED_ORDERS, SEEDINGS
from .thresholds import SCALES, SIGNS, THRESHOLD_RULES, ThresholdRule

DTYPES = ("float32", "float64")
SEED_ATTRIBUTIONS = ("ig", "gradient")


#: the cached stages of an :class:`~hsets_widgets.hsets.explain.Explainer`, each with the stages
#: computed from it (a setting that invalidates a stage invalidates those too)
STAGES = {"score": ("attribution", "seed_map", "rows"), "attribution": ("seed_map",),
          "seed_map": (), "segmentation": (), "rows": ()}


# ---- field checks: each returns None when the value is fine, else what is wrong ----------
def _one_of(options):
    """A check that ``v`` is one of ``options`` (a collection, or a function returning one,
    read at check time so registered additions count).
    """
    def check(v):
        opts = options() if callable(options) else options
        if not isinstance(v, str) or v not in opts:
            return f"use one of {', '.join(repr(o) for o in opts)}"
        return None
    return check


def _number(lo=None, hi=None, lo_open=False, allow_none=False):
    def check(v):
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)):
            return "need a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"need a number {'>' if lo_open else '>='} {lo:g}"
        if hi is not None and v > hi:
            return f"need a number <= {hi:g}"
        return None
    return check


def _whole(lo=None, hi=None, allow_none=False, none_means=""):
    def check(v):
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            return "need a whole number" + (f" (or None for {none_means})" if allow_none else "")
        if lo is not None and v < lo:
            return f"need a whole number >= {lo}" + (f" (or None for {none_means})" if allow_none else "")
        if hi is not None and v > hi:
            return f"need a whole number <= {hi}"
        return None
    return check


def _flag(v):
    return None if isinstance(v, (bool, np.bool_)) else "use True or False"


def _baseline(v):
    import torch

    if isinstance(v, torch.Tensor):
        return None
    if isinstance(v, str):
        return _one_of(BASELINE_FNS)(v)
    return _number()(v) and f"use one of {', '.join(BASELINE_FNS)}, a number or a tensor"


def _memory_budget(v):
    if v is None:
        return None
    try:
        parse_bytes(v)
    except ValueError as err:
        return str(err)
    return None


def _batch_size(v):
    if v == "auto":
        return None
    return _whole(1)(v) and "use 'auto' or a whole number >= 1"


def _setting(default, check, help: str, *stages):
    """A settings field: its default, its check (None when a value is fine, else what is wrong),
    a line of help (the command line's ``--name`` shows it), and the cached ``stages`` its
    change makes stale (none: only growth, values and painting read it, and those are never
    cached). The one place a setting is declared: validation, the command-line flags and
    :func:`stale_stages` read these.
    """
    return field(default=default, metadata={"check": check, "help": help, "stages": stages})


@dataclass(frozen=True)
class HSetsConfig:
    """Every setting of an H-Sets run (see the module docstring for the presets).

    The field defaults are the ``default`` preset; the other presets name what they change.
    Frozen: use :meth:`replace` (or :func:`get_config` with overrides) for a changed copy.
    Every field is checked when the settings are made, so a typo fails at once, naming the
    field, the value and what is allowed. Each field declares the cached stages its change
    makes stale (:func:`stale_stages`).
    """

    # explained score
    score: str = _setting("logit", _one_of(SCORE_KINDS),
                         "the explained score of the target: logit, probability, log_probability or log_odds",
                         "score")
    # curvature used for Hessian rows only (IG and IDG use the model as it is)
    curvature: str = _setting("softplus", _one_of(lambda: (*RAMPS, "none")),
                             "smooth stand-in for ReLU/ReLU6 inside Hessian passes: softplus, surrogate or none",
                             "rows")
    beta: float = _setting(10.0, _number(0, lo_open=True),
                          "softplus sharpness of the curvature stand-in (larger: closer to the network's ReLU)", "rows")
    tau: float = _setting(1e-3, _number(0, lo_open=True),
                         "width of the authors' surrogate ReLU derivative", "rows")
    keep_clip: bool = _setting(True, _flag,
                              "keep ReLU6's upper clip inside Hessian passes (the authors' code drops it)", "rows")
    features: str = _setting("pixel", _one_of(FEATURES),
                            "Hessian features: pixel (channels summed) or channel (one per channel-pixel)", "rows")
    # which attribution places seeds: "ig" or "gradient"
    seed_attribution: str = _setting("ig", _one_of(SEED_ATTRIBUTIONS),
                                    "attribution that places the seeds: ig or gradient", "seed_map")
    # Integrated Gradients: baseline, path steps and the quadrature rule along the path
    baseline: object = _setting("zeros", _baseline,
                               "IG baseline: zeros, grey, mean, blur, model-zero or a number", "attribution")
    n_steps: int = _setting(DEFAULT_STEPS, _whole(1),
                           "IG path points", "attribution")
    rule: str = _setting(DEFAULT_RULE, _one_of(IG_RULES),
                        "IG quadrature rule along the path (adaptive places points where the score changes)",
                        "attribution")
    # segmentation (SAM-class segmenters chosen by name; 8 x 8 prompts keep a CPU run short)
    sam_points_per_side: int = _setting(8, _whole(1),
                                       "prompt grid of SAM-class segmenters (points per side)", "segmentation")
    # seeds (None: one per segment)
    n_sets: Optional[int] = _setting(5, _whole(1, allow_none=True, none_means="one per segment"),
                                    "number of sets (all: one per segment)")
    seed_order: str = _setting("mass", _one_of(SEED_ORDERS),
                              "which segments get seeds first: mass or max of positive attribution")
    seeding: str = _setting("segments", _one_of(SEEDINGS),
                           "where seeds come from: segments or peaks of the attribution")
    seed_blur: float = _setting(8.0, _number(0),
                               "attribution smoothing (pixels) before seeds are placed")
    seed_spacing: int = _setting(16, _whole(1),
                                "least distance (pixels) between seeds placed by peaks")
    # growth
    threshold: str = _setting("topk", _one_of(THRESHOLD_RULES),
                             "rule that admits a row's entries: topk, seed-fraction, minmax...")
    mu: float = _setting(256.0, _number(),
                        "threshold of the rule (topk: entries per row; fractions: share of the reference)")
    sign: str = _setting("magnitude", _one_of(SIGNS),
                        "which Hessian entries count: magnitude, positive or negative")
    row_blur: float = _setting(2.0, _number(0),
                              "smoothing (pixels) of each Hessian row's magnitude before thresholding")
    fresh: bool = _setting(True, _flag,
                          "a top-k row counts only pixels not in the set yet")
    row_scale: str = _setting("none", _one_of(SCALES),
                             "per-row normalisation before thresholding")
    row_floor: float = _setting(0.0, lambda v: _number(0)(v) or (None if v < 1 else "need a fraction < 1"),
                               "only entries above this share of the seed row's largest |H| admit a pixel "
                               "(0.3: the interaction mode)")
    nu: int = _setting(2000, _whole(1),
                      "most members of a set")
    nu_split: str = _setting("each", _one_of(NU_SPLITS),
                            "how nu is shared among the sets")
    cap: str = _setting("members", _one_of(CAPS),
                       "what nu counts: members, or the authors' count of joined features")
    order: str = _setting("bfs", _one_of(GROWTH_ORDERS),
                         "growth order: bfs (breadth-first) or dfs (the paper's recursion)")
    within_mask: bool = _setting(True, _flag,
                                "grow only inside the seed's segment (false: across segments, the interaction mode)")
    max_rows: Optional[int] = _setting(256, _whole(1, allow_none=True, none_means="no limit"),
                                      "most Hessian rows per set (none: no limit)")
    # set value
    set_score: str = _setting("idg", _one_of(SET_SCORES),
                             "score of a subset: idg, signed-idg, abs-gradient...")
    value_kind: str = _setting("mean", _one_of(VALUE_KINDS),
                              "a set's value: mean over sampled subsets, or the authors' sample-sum")
    sampler: str = _setting("bernoulli", _one_of(SAMPLERS),
                           "how subsets are drawn: bernoulli or sizes")
    n_samples: int = _setting(1000, _whole(2),
                             "subsets drawn per set value")
    exact_limit: int = _setting(12, _whole(0, 20),
                               "sets with at most this many members are valued exactly (all subsets)")
    # heatmap
    paint: str = _setting("pixels", _one_of(PAINTS),
                         "what a set paints: pixels, or its segment masks")
    mask_limit: float = _setting(1.0, _number(0, 1, lo_open=True),
                                "most share of the image a painted mask may cover")
    member_weights: str = _setting("join", _one_of(MEMBER_WEIGHTS),
                                  "member weights in the heatmap: join (by join order) or flat")
    signed: bool = _setting(False, _flag,
                           "paint signed values instead of magnitudes")
    combine: str = _setting("sum", _one_of(COMBINES),
                           "how overlapping sets combine in the heatmap: sum or max")
    # computation
    hessian_method: str = _setting("forward-over-reverse", _one_of(HESSIAN_METHODS),
                                  "how Hessian rows are computed: forward-over-reverse, stacked or double-backward",
                                  "rows")
    batch_size: object = _setting("auto", _batch_size,
                                 "Hessian rows per pass (auto: from the memory room)", "rows")
    # only how many rows share a CPU pass, not which rows: nothing cached goes stale
    max_batch: int = _setting(CPU_MAX_BATCH, _whole(1), "most Hessian rows per CPU pass when batch_size is auto")
    # most resident memory the process should reach ("1.5G", bytes; None: $HSETS_MEMORY_BUDGET
    # or no budget); it only sizes Hessian and IG passes, so no cached stage goes stale
    memory_budget: object = _setting(None, _memory_budget,
                                    "most resident memory the process should reach (1.5G; none: $HSETS_MEMORY_BUDGET)")
    dtype: str = _setting("float32", _one_of(DTYPES),
                         "dtype of Hessian rows: float32 or float64", "rows")
    seed: int = _setting(0, _whole(0),
                        "seed of every random choice")
    preset: str = _setting("custom", lambda v: None if isinstance(v, str) else "need a name",
                          "the preset these settings came from")

    def __post_init__(self):
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                problem = check(getattr(self, f.name))
                if problem:
                    raise ValueError(f"H-Sets setting {f.name}={getattr(self, f.name)!r} is not "
                                     f"valid: {problem}")
        topk = THRESHOLD_RULES[self.threshold].is_topk
        if topk and self.mu < 1:
            raise ValueError(f"H-Sets setting mu={self.mu!r} is not valid: the {self.threshold} rule keeps "
                             "round(mu) entries per row, so mu must be at least 1")
        if self.fresh and not topk:
            raise ValueError(f"H-Sets setting fresh=True needs a top-k threshold such as 'topk' (got "
                             f"{self.threshold!r}): it counts new members per row")
        if self.value_kind == "sample-sum" and self.sampler != "bernoulli":
            raise ValueError("H-Sets setting value_kind='sample-sum' sums Bernoulli draws; use "
                             "sampler='bernoulli'")

    @property
    def curvature_spec(self) -> CurvatureSpec:
        """The curvature settings as a :class:`CurvatureSpec`."""
        return CurvatureSpec(self.curvature, self.beta, self.tau, self.keep_clip)

    @property
    def threshold_rule(self) -> ThresholdRule:
        """The threshold settings as a :class:`ThresholdRule`."""
        return ThresholdRule(self.threshold, self.mu, self.sign, self.row_blur, self.fresh, self.row_scale,
                             self.row_floor)

    def replace(self, **changes) -> HSetsConfig:
        """A copy with ``changes`` (validated; unknown field names are an error)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown H-Sets setting(s): {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready form (a tensor baseline becomes ``"custom"``)."""
        d = dataclasses.asdict(self)
        if not isinstance(d["baseline"], (str, int, float)):
            d["baseline"] = "custom"
        return d




def stale_stages(changed) -> set:
    """The cached stages made stale when the settings named in ``changed`` change (each
    field's declared stages and every stage computed from them, :data:`STAGES`).
    """
    by_name = {f.name: f.metadata.get("stages", ()) for f in fields(HSetsConfig)}
    todo = [stage for name in changed for stage in by_name[name]]
    stale = set()
    while todo:
        stage = todo.pop()
        if stage not in stale:
            stale.add(stage)
            todo.extend(STAGES[stage])
    return stale


PRESETS = {
    "default": HSetsConfig(preset="default"),
    "paper": HSetsConfig(
        preset="paper", curvature="softplus", beta=10.0, seed_attribution="ig",
        threshold="seed-fraction", mu=0.5, sign="positive", row_blur=0.0, fresh=False, nu=2000,
        within_mask=False, order="dfs", max_rows=2000, set_score="idg", value_kind="mean",
        sampler="bernoulli", n_samples=1000, member_weights="flat"),
    "authors-code": HSetsConfig(
        preset="authors-code", score="logit", curvature="surrogate", tau=1e-3, features="channel",
        seed_attribution="gradient", seed_order="max", baseline="model-zero", n_steps=30,
        rule="inclusive", threshold="minmax", mu=0.5, sign="positive", nu=2000, order="dfs",
        within_mask=False, max_rows=2000, set_score="abs-gradient", value_kind="sample-sum",
        sampler="bernoulli", n_samples=30, exact_limit=0, paint="pixels", combine="sum",
        keep_clip=False, cap="authors", row_blur=0.0, fresh=False, member_weights="flat"),
    "interactions": HSetsConfig(preset="interactions", row_floor=0.3, within_mask=False, max_batch=16),
}


def get_config(preset="default", **overrides) -> HSetsConfig:
    """The settings of ``preset`` (a name or an :class:`HSetsConfig`) with ``overrides``."""
    if isinstance(preset, HSetsConfig):
        cfg = preset
    elif preset in PRESETS:
        cfg = PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    return cfg.replace(**overrides) if overrides else cfg
