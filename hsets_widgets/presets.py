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
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from .curvature import RAMPS, CurvatureSpec
from .growth import CAPS, ORDERS, SCALES, SIGNS, THRESHOLD_RULES, ThresholdRule
from .heatmap import COMBINES, MEMBER_WEIGHTS, PAINTS
from .hessian import FEATURES, METHODS
from .idg import SAMPLERS, SET_SCORES, VALUE_KINDS
from .integrated_gradients import BASELINE_FNS
from .integrated_gradients import RULES as IG_RULES
from .scores import SCORE_KINDS
from .seeds import SEED_ORDERS, SEEDINGS

DTYPES = ("float32", "float64")
#: ``each``: every set has at most ``nu`` members; ``mass``: ``nu`` members in all, shared
#: among the automatic seeds in proportion to their segments' positive attribution mass
NU_SPLITS = ("each", "mass")
SEED_ATTRIBUTIONS = ("ig", "gradient")


@dataclass(frozen=True)
class HSetsConfig:
    """Every setting of an H-Sets run (see the module docstring for the presets).

    Frozen: use :meth:`replace` (or :func:`get_config` with overrides) for a changed copy.
    Every field is checked when the settings are made, so a typo fails at once, naming the
    field, the value and what is allowed.
    """

    # explained score
    score: str = "logit"
    # curvature used for Hessian rows only (IG and IDG use the model as it is)
    curvature: str = "softplus"
    beta: float = 10.0
    tau: float = 1e-3
    keep_clip: bool = True
    features: str = "pixel"
    # attribution used to place seeds and by IDG
    seed_attribution: str = "ig"          # "ig" or "gradient"
    baseline: object = "zeros"
    n_steps: int = 64
    rule: str = "adaptive"
    # segmentation (SAM-class segmenters chosen by name; 8 x 8 prompts keep a CPU run short)
    sam_points_per_side: int = 8
    # seeds (None: one per segment)
    n_sets: Optional[int] = 5
    seed_order: str = "mass"
    seeding: str = "segments"
    seed_blur: float = 8.0
    seed_spacing: int = 16
    # growth
    threshold: str = "topk"
    mu: float = 8.0
    sign: str = "magnitude"
    row_blur: float = 0.0
    fresh: bool = False
    row_scale: str = "none"
    nu: int = 64
    nu_split: str = "each"
    cap: str = "members"
    order: str = "bfs"
    within_mask: bool = False
    max_rows: Optional[int] = 256
    # set value
    set_score: str = "idg"
    value_kind: str = "mean"
    sampler: str = "bernoulli"
    n_samples: int = 1000
    exact_limit: int = 12
    # heatmap
    paint: str = "pixels"
    mask_limit: float = 1.0
    member_weights: str = "flat"
    signed: bool = False
    combine: str = "sum"
    # computation
    hessian_method: str = "forward-over-reverse"
    batch_size: object = "auto"
    dtype: str = "float32"
    seed: int = 0
    preset: str = "custom"

    def __post_init__(self):
        for f in fields(self):
            check = _CHECKS.get(f.name)
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
        return ThresholdRule(self.threshold, self.mu, self.sign, self.row_blur, self.fresh, self.row_scale)

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


def _batch_size(v):
    if v == "auto":
        return None
    return _whole(1)(v) and "use 'auto' or a whole number >= 1"


_CHECKS = {
    "score": _one_of(SCORE_KINDS), "curvature": _one_of(lambda: (*RAMPS, "none")),
    "beta": _number(0, lo_open=True), "tau": _number(0, lo_open=True), "keep_clip": _flag,
    "features": _one_of(FEATURES), "seed_attribution": _one_of(SEED_ATTRIBUTIONS),
    "baseline": _baseline, "n_steps": _whole(1), "rule": _one_of(IG_RULES),
    "sam_points_per_side": _whole(1), "n_sets": _whole(1, allow_none=True, none_means="one per segment"),
    "seed_order": _one_of(SEED_ORDERS), "seeding": _one_of(SEEDINGS), "seed_blur": _number(0),
    "seed_spacing": _whole(1), "threshold": _one_of(THRESHOLD_RULES), "mu": _number(),
    "sign": _one_of(SIGNS), "row_blur": _number(0), "fresh": _flag, "row_scale": _one_of(SCALES),
    "nu": _whole(1), "nu_split": _one_of(NU_SPLITS), "cap": _one_of(CAPS), "order": _one_of(ORDERS),
    "within_mask": _flag,
    "max_rows": _whole(1, allow_none=True, none_means="no limit"), "set_score": _one_of(SET_SCORES),
    "value_kind": _one_of(VALUE_KINDS), "sampler": _one_of(SAMPLERS), "n_samples": _whole(2),
    "exact_limit": _whole(0, 20), "paint": _one_of(PAINTS), "mask_limit": _number(0, 1, lo_open=True),
    "member_weights": _one_of(MEMBER_WEIGHTS), "signed": _flag, "combine": _one_of(COMBINES),
    "hessian_method": _one_of(METHODS), "batch_size": _batch_size, "dtype": _one_of(DTYPES),
    "seed": _whole(0), "preset": lambda v: None if isinstance(v, str) else "need a name",
}


PRESETS = {
    "default": HSetsConfig(
        preset="default", threshold="topk", mu=256.0, sign="magnitude", row_blur=2.0, fresh=True,
        nu=2000, n_sets=5, within_mask=True, order="bfs", member_weights="join"),
    "paper": HSetsConfig(
        preset="paper", curvature="softplus", beta=10.0, seed_attribution="ig",
        threshold="seed-fraction", mu=0.5, sign="positive", nu=2000, order="dfs",
        max_rows=2000, set_score="idg", value_kind="mean", sampler="bernoulli", n_samples=1000),
    "authors-code": HSetsConfig(
        preset="authors-code", score="logit", curvature="surrogate", tau=1e-3, features="channel",
        seed_attribution="gradient", seed_order="max", baseline="model-zero", n_steps=30,
        rule="inclusive", threshold="minmax", mu=0.5, sign="positive", nu=2000, order="dfs",
        within_mask=False, max_rows=2000, set_score="abs-gradient", value_kind="sample-sum",
        sampler="bernoulli", n_samples=30, exact_limit=0, paint="pixels", combine="sum",
        keep_clip=False, cap="authors"),
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
