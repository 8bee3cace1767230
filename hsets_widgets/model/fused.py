"""A classifier's fused twin for gradient passes: eval-mode batch norm folded into the
convolution before it.

IG's path gradients and Hessian rows run the classifier forward and backward (and, for rows,
forward-mode through the backward) dozens of times per explanation. In eval mode a batch norm is
a per-channel affine map, so after a convolution whose output feeds nothing else it can be
folded into that convolution's weights and bias: one op fewer in each of the three passes, and
one saved activation fewer. The twin computes the same function to float32 rounding
(bench/RESULTS.md, "speed-fused", says what it changes and what it gains).

The twin is made by tracing the module with ``torch.fx``; a module that cannot be traced, or has
nothing to fold, is used as it is. The user's module is never modified: the twin holds its own
copies of the folded layers (the rest is shared), and is made again when a weight changes.
"""
from __future__ import annotations

import copy
import operator
from typing import Optional

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F


class _Tracer(torch.fx.Tracer):
    """Convolutions are leaves, subclasses too (timm's ``Conv2dSame`` pads in Python from the
    input's size). Batch norms are either leaves (``torch.nn``'s own, which check their input's
    rank with an ``if``) or traced through (timm's ``BatchNormAct2d`` subclasses
    ``nn.BatchNorm2d`` and adds its activation in ``forward``, ending in one ``F.batch_norm``
    call): both forms are folded.
    """

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)


_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def _attr(gm: torch.fx.GraphModule, node) -> Optional[torch.Tensor]:
    if node is None:
        return None
    if not isinstance(node, torch.fx.Node) or node.op != "get_attr":
        raise LookupError("not a stored tensor")
    return operator.attrgetter(node.target)(gm)


def _reads_metadata(node: torch.fx.Node) -> bool:
    """Whether ``node`` reads only a tensor's shape or type (timm asserts ``x.ndim == 4``
    before each batch norm), which folding does not change.
    """
    if node.op == "call_function" and node.target is getattr:
        return node.args[1] in ("ndim", "shape", "dtype", "device")
    return node.op == "call_method" and node.target in ("size", "dim")


def _batch_norm(gm: torch.fx.GraphModule, node: torch.fx.Node) -> Optional[tuple]:
    """``(input node, running mean, running var, weight, bias, eps)`` of an eval-mode batch
    norm ``node`` (an ``F.batch_norm`` call or a ``BatchNorm2d`` leaf), or None.
    """
    if node.op == "call_module":
        bn = gm.get_submodule(node.target)
        if type(bn) is not nn.BatchNorm2d or bn.training or len(node.args) != 1 or node.kwargs:
            return None
        return node.args[0], bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps
    if node.op != "call_function" or node.target is not F.batch_norm:
        return None
    a = {"weight": None, "bias": None, "training": False, "eps": 1e-5,
         **dict(zip(_BN_ARGS, node.args)), **node.kwargs}
    if a["training"] is not False:
        return None
    try:
        tensors = [_attr(gm, a[k]) for k in ("running_mean", "running_var", "weight", "bias")]
    except LookupError:
        return None
    return (a["input"], *tensors, float(a["eps"]))


def _fold_one(gm: torch.fx.GraphModule, node: torch.fx.Node, exact: bool) -> bool:
    """Fold the eval-mode batch norm ``node`` into the convolution feeding it, if any."""
    found = _batch_norm(gm, node)
    if found is None:
        return False
    conv_node, mean, var, weight, bias, eps = found
    if not isinstance(conv_node, torch.fx.Node) or conv_node.op != "call_module" \
            or any(u is not node and not _reads_metadata(u) for u in conv_node.users):
        return False
    conv = gm.get_submodule(conv_node.target)
    if not isinstance(conv, nn.Conv2d) or (exact and type(conv) is not nn.Conv2d):
        return False
    if mean is None or var is None:
        return False
    # in float64: the folded weights are then rounded once, to the conv's own dtype
    scale = torch.rsqrt(var.double() + eps)
    if weight is not None:
        scale = scale * weight.double()
    shift = -mean.double() * scale if bias is None else bias.double() - mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        folded.weight = nn.Parameter((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype),
                                     requires_grad=False)
        folded.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
    parent, _, name = conv_node.target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, folded)
    node.replace_all_uses_with(conv_node)
    gm.graph.erase_node(node)
    return True


def _folded(module: nn.Module, graph: torch.fx.Graph, exact: bool) -> Optional[torch.fx.GraphModule]:
    gm = torch.fx.GraphModule(module, copy.deepcopy(graph))
    if not sum([_fold_one(gm, n, exact) for n in list(gm.graph.nodes)]):
        return None
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval()


def _agrees(module: nn.Module, twin: nn.Module, example: torch.Tensor) -> bool:
    with torch.no_grad():
        a, b = module(example), twin(example)
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max())))


def fold_batch_norm(module: nn.Module, example: torch.Tensor) -> Optional[torch.fx.GraphModule]:
    """An eval-mode twin of ``module`` with every batch norm that follows a convolution (and
    is that convolution's only reader) folded into it, or None where ``module`` cannot be
    traced, has nothing to fold, or the twin's output on ``example`` (a batch the module
    takes) differs from the module's beyond float32 rounding. ``module`` is not changed.

    A convolution subclass is folded only if the twin still agrees (one whose ``forward``
    transforms its weights, as weight standardisation does, would not): otherwise plain
    ``nn.Conv2d`` layers alone are tried.
    """
    if module.training:
        return None
    try:
        graph = _Tracer().trace(module)
    except Exception:  # torch.fx raises many types on data-dependent control flow
        return None
    for exact in (False, True):
        try:
            twin = _folded(module, graph, exact)
        except Exception:  # a layer the folding does not understand: leave the module as it is
            return None
        if twin is not None and _agrees(module, twin, example):
            return twin
    return None
