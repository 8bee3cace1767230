"""Settings of one H-Sets run, and the named presets.

``default``
    What this toolkit recommends on a laptop CPU: softplus(10) curvature, pixel features,
    IG seeds (segments ranked by attribution mass), the top 8 entries of each row (by
    magnitude), breadth-first, sets of at most 64 pixels, Bernoulli subset sampling with a
    normalised value (the mean of ``d`` over subsets). Compact sets in seconds.
``paper``
    The workshop paper as written: IG seeds, threshold ``mu = 0.5 x |IG of the seed|`` on
    positive Hessian entries, recursive (depth-first) merge, ``nu = 2000``, signed IDG set
    score, value by random subset sampling. The paper names no curvature option although a
    ReLU network's Hessian is zero; softplus(10) is used and said so.
``authors-code``
    The authors' public code as METHOD-FACTS section 2 describes it: surrogate ReLU
    (tau = 1e-3), raw logit of the argmax class, channel-pixel features, plain-gradient
    seeds (first feature in an unused segment), min-max normalised rows above 0.5,
    depth-first, ``nu = 2000``, not confined to the seed's mask, zero baseline (the network's
    zero input), 31 path points including both ends, absolute-gradient set score, value =
    plain sum over 30 Bernoulli subsets, sets painted by their pixels and summed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields

from .curvature import CurvatureSpec
from .growth import ThresholdRule


@dataclass
class HSetsConfig:
    """Every setting of an H-Sets run (see the module docstring for the presets)."""

    # explained score
    score: str = "logit"
    # curvature used for Hessian rows only (IG and IDG use the model as it is)
    curvature: str = "softplus"
    beta: float = 10.0
    tau: float = 1e-3
    features: str = "pixel"
    # attribution used to place seeds and by IDG
    seed_attribution: str = "ig"          # "ig" or "gradient"
    baseline: object = "zeros"
    n_steps: int = 32
    rule: str = "midpoint"
    # segmentation (SAM-class segmenters chosen by name; 8 x 8 prompts keep a CPU run short)
    sam_points_per_side: int = 8
    # seeds
    n_sets: int = 5
    seed_order: str = "mass"
    # growth
    threshold: str = "topk"
    mu: float = 8.0
    sign: str = "magnitude"
    nu: int = 64
    order: str = "bfs"
    within_mask: bool = False
    max_rows: int = 256
    # set value
    set_score: str = "idg"
    value_kind: str = "mean"
    sampler: str = "bernoulli"
    n_samples: int = 1000
    exact_limit: int = 12
    # heatmap
    paint: str = "pixels"
    combine: str = "sum"
    # computation
    hessian_method: str = "forward-over-reverse"
    batch_size: object = "auto"
    dtype: str = "float32"
    seed: int = 0
    preset: str = "custom"

    @property
    def curvature_spec(self) -> CurvatureSpec:
        return CurvatureSpec(self.curvature, self.beta, self.tau)

    @property
    def threshold_rule(self) -> ThresholdRule:
        return ThresholdRule(self.threshold, self.mu, self.sign)

    def replace(self, **changes) -> "HSetsConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown H-Sets setting(s): {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not isinstance(d["baseline"], (str, int, float)):
            d["baseline"] = "custom"
        return d


PRESETS = {
    "default": HSetsConfig(preset="default"),
    "paper": HSetsConfig(
        preset="paper", curvature="softplus", beta=10.0, seed_attribution="ig",
        threshold="seed-fraction", mu=0.5, sign="positive", nu=2000, order="dfs",
        max_rows=2000, set_score="idg", value_kind="mean", sampler="bernoulli", n_samples=1000),
    "authors-code": HSetsConfig(
        preset="authors-code", score="logit", curvature="surrogate", tau=1e-3, features="channel",
        seed_attribution="gradient", seed_order="max", baseline="model-zero", n_steps=30,
        rule="inclusive", threshold="minmax", mu=0.5, sign="positive", nu=2000, order="dfs",
        within_mask=False, max_rows=2000, set_score="abs-gradient", value_kind="sample-sum",
        sampler="bernoulli", n_samples=30, exact_limit=0, paint="pixels", combine="sum"),
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
