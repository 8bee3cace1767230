"""Toy classifiers with planted interactions: models whose right answer is known.

:class:`PlantedModel` is a real ``nn.Module`` whose class-0 logit is a sum of *terms*, each a
coefficient times a product of smooth functions of the mean intensity of a few rectangular
*patches*; class 1's logit is 0. Pixels of two patches in one term interact (their Hessian
entry is non-zero) and nothing else does: a patch in a term of its own with a linear function
has a main effect and no interaction at all, one with a quadratic function interacts only
within itself. :func:`planted_classifier` wraps it for the toolkit (``wrap_module``), so every
method can be checked against the planted structure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .models import wrap_module

SHAPES = ("linear", "square", "tanh")


@dataclass(frozen=True)
class Patch:
    """A rectangle ``[y0, y1) x [x0, x1)`` of the image and the function of its mean intensity
    (``linear``: ``u``; ``square``: ``u^2``; ``tanh``: ``tanh(3 (u - 0.5))``).
    """

    y0: int
    x0: int
    y1: int
    x1: int
    shape: str = "linear"

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown patch function {self.shape!r}; use one of {', '.join(SHAPES)}")
        if not (self.y1 > self.y0 >= 0 and self.x1 > self.x0 >= 0):
            raise ValueError(f"empty or negative patch ({self.y0}, {self.x0}, {self.y1}, {self.x1})")

    def pixels(self, width: int) -> np.ndarray:
        """The patch's flat pixel indices in an image ``width`` pixels wide."""
        yy, xx = np.mgrid[self.y0:self.y1, self.x0:self.x1]
        return (yy * width + xx).ravel()


@dataclass(frozen=True)
class Term:
    """``coefficient * prod_p f_p(mean intensity of p)`` over its ``patches``."""

    patches: tuple
    coefficient: float = 1.0


class PlantedModel(nn.Module):
    """Logits ``[sum of terms, 0]`` of an image ``(B, 3, H, W)`` (see the module docstring)."""

    def __init__(self, terms: Sequence[Term], size: int):
        super().__init__()
        self.terms = tuple(terms)
        self.size = int(size)
        for t in self.terms:
            for p in t.patches:
                if p.y1 > size or p.x1 > size:
                    raise ValueError(f"patch {p} does not fit a {size}x{size} image")

    @staticmethod
    def _f(u: torch.Tensor, shape: str) -> torch.Tensor:
        if shape == "square":
            return u * u
        if shape == "tanh":
            return torch.tanh(3.0 * (u - 0.5))
        return u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The two logits of each image of the batch."""
        grey = x.mean(1)
        score = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for t in self.terms:
            prod = torch.full_like(score, float(t.coefficient))
            for p in t.patches:
                prod = prod * self._f(grey[:, p.y0:p.y1, p.x0:p.x1].mean((1, 2)), p.shape)
            score = score + prod
        return torch.stack([score, torch.zeros_like(score)], 1)

    def interacting(self, patch: Patch) -> set:
        """The patches whose pixels interact with ``patch``'s (itself included when its own
        function is curved), by the planted terms.
        """
        out = set()
        for t in self.terms:
            if patch in t.patches:
                others = [p for p in t.patches if p != patch]
                out.update(others)
                if patch.shape != "linear":
                    out.add(patch)
        return out


def planted_classifier(terms: Sequence[Term], size: int = 64, dtype=torch.float64):
    """A :class:`PlantedModel` wrapped as a toolkit classifier (inputs in [0, 1] as they are,
    classes ``"planted"`` and ``"rest"``).
    """
    return wrap_module(PlantedModel(terms, size).to(dtype), normalize=lambda x: x, input_size=size,
                       class_names=["planted", "rest"], name="planted")


def scene(size: int = 64, seed: int = 0) -> dict:
    """The standard planted scene on a ``size x size`` image (``size >= 64``), by role.

    ``pair``: two distant patches whose term is a product (they interact with each other);
    ``triple``: three patches in one product term; ``inner``: a patch with a squared main
    effect (its pixels interact among themselves); ``main``: a patch with a linear main effect
    (no interaction at all). Returns ``{"terms": [...], "image": ..., role: [Patch, ...]}``, the
    image ``(size, size, 3)`` dim noise from generator ``seed`` with every patch brightened, so
    removing a patch changes the score.
    """
    s = size // 64
    P = lambda y, x, shape="tanh": Patch(y * s, x * s, (y + 8) * s, (x + 8) * s, shape)  # noqa: E731
    pair = [P(4, 4, "linear"), P(4, 48, "linear")]
    triple = [P(28, 4, "linear"), P(28, 28, "linear"), P(48, 52, "linear")]
    inner = [P(48, 8, "square")]
    main = [P(48, 30, "linear")]
    terms = [Term(tuple(pair), 4.0), Term(tuple(triple), 8.0), Term(tuple(inner), 2.0), Term(tuple(main), 1.0)]
    image = np.random.default_rng(seed).random((size, size, 3)).astype(np.float32) * 0.5
    for q in pair + triple + inner + main:
        image[q.y0:q.y1, q.x0:q.x1] += 0.45
    return {"terms": terms, "image": image, "pair": pair, "triple": triple, "inner": inner, "main": main}


# ---- the synthetic functions F1-F4 of Archipelago (Tsang et al. 2020), smoothly extended ----
def _and(x: torch.Tensor, on: Sequence[tuple]) -> torch.Tensor:
    """``+1`` where every ``x_i`` equals its value in ``on`` (pairs ``(i, +-1)``), else ``-1``;
    on ``{-1, +1}^p`` exactly, and multilinear in between (so it has a Hessian).
    """
    prod = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    for i, v in on:
        prod = prod * (1.0 + v * x[:, i]) / 2.0
    return 2.0 * prod - 1.0


def synthetic_function(k: int, p: int = 40):
    """``(f, pairs)``: Archipelago's synthetic function ``F_k`` (k = 1..4) of ``p`` inputs in
    ``{-1, +1}`` (input ``+1``, baseline ``-1``), as a torch function of a ``(B, p)`` batch, and
    its planted interacting pairs ``{(i, j): i < j}``.

    Every function is ``sum(x)`` plus: F1, products ``x_i x_j`` among the first quarter and
    between the second and third quarters; F2, an AND of the first half at ``+1`` plus an AND
    of the middle half at ``+1``; F3, the first AND at the baseline ``-1``; F4, an AND of
    ``x_0 = x_1 = +1, x_2 = -1`` and the middle-half AND. ANDs and products are taken in their
    multilinear form, equal to the original on ``{-1, +1}^p``.
    """
    q = p // 4
    if k == 1:
        blocks = [(range(q), range(q)), (range(q, 2 * q), range(2 * q, 3 * q))]

        def f(x):
            y = x.sum(1)
            for a, b in blocks:
                y = y + x[:, list(a)].sum(1) * x[:, list(b)].sum(1)
            return y
        pairs = {tuple(sorted((i, j))) for a, b in blocks for i in a for j in b if i != j}
        return f, pairs
    ands = {2: [[(i, 1.0) for i in range(2 * q)], [(i, 1.0) for i in range(q, 3 * q)]],
            3: [[(i, -1.0) for i in range(2 * q)], [(i, 1.0) for i in range(q, 3 * q)]],
            4: [[(0, 1.0), (1, 1.0), (2, -1.0)], [(i, 1.0) for i in range(q, 3 * q)]]}
    if k not in ands:
        raise ValueError(f"Archipelago's synthetic functions are F1-F4, got F{k}")
    terms = ands[k]

    def f(x):
        return x.sum(1) + sum(_and(x, on) for on in terms)
    pairs = {tuple(sorted((a[0], b[0]))) for on in terms for a in on for b in on if a[0] != b[0]}
    return f, pairs
