"""The explained score: a logit, probability or log-probability of one class.

``ScoreFn(classifier, target, kind)`` maps a batch of images ``(B, 3, H, W)`` in [0, 1] to
the ``(B,)`` scores that every attribution, Hessian row and set value differentiates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .forward import logits
from .models import Classifier, ModelError, check_outputs

SCORE_KINDS = ("logit", "probability", "log_probability", "log_odds")


@dataclass
class ScoreFn:
    """Score of class ``target`` under ``classifier``.

    Parameters
    ----------
    classifier : Classifier
    target : int
        Output index explained.
    kind : {"logit", "probability", "log_probability", "log_odds"}
        ``logit`` is the raw output (what the authors' code explains); the others go
        through a softmax (``log_odds`` is ``log(p / (1 - p))``, MoXI's score), whose
        curvature is nonzero even for ReLU networks but is the softmax's own curvature pulled
        back through the network, not an interaction between pixels inside it.
    """

    classifier: Classifier
    target: int
    kind: str = "logit"

    def __post_init__(self):
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"unknown score {self.kind!r}; use one of {', '.join(SCORE_KINDS)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The explained score of ``x`` for the target class, one per image (a pass that needs
        no gradient goes through :func:`hsets_widgets.model.forward.logits`).
        """
        out = logits(self.classifier, x)
        if self.kind == "logit":
            return out[:, self.target]
        if self.kind == "probability":
            return out.softmax(-1)[:, self.target]
        logp = out.log_softmax(-1)[:, self.target]
        if self.kind == "log_probability":
            return logp
        # log(p / (1 - p)), with 1 - p from the other classes' mass so it stays finite near p = 1
        rest = torch.cat([out[:, :self.target], out[:, self.target + 1:]], dim=1)
        return logp - (rest.logsumexp(-1) - out.logsumexp(-1))


def resolve_target(x: torch.Tensor, classifier: Classifier, target: Optional[int] = None) -> tuple:
    """Return ``(target, logits)``: the chosen class, or the predicted one when ``target`` is None.

    Raises :class:`ModelError` if the model does not return ``(1, classes)`` scores or the
    target is out of range.
    """
    with torch.no_grad():
        logits = check_outputs(x.unsqueeze(0), classifier)[0].float()
    n = logits.numel()
    if target is None:
        target = int(logits.argmax())
    elif not 0 <= int(target) < n:
        raise ModelError(f"target class {target} is out of range: the model has {n} outputs")
    return int(target), logits
