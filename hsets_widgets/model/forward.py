"""A classifier's logits for a batch, through ONNX Runtime or a fused twin where it can.

Most of the toolkit's forward passes need no gradient: the adaptive IG rule's probes, ROAD and
insertion/deletion curves, the interaction test's coalitions, Archipelago's and MoXI's masked
images, the Explorer's live readout. On a CPU, ONNX Runtime runs EfficientNet-Lite0's forward
pass faster than eager PyTorch (bench/RESULTS.md, "speed"), so
:func:`logits` exports the classifier once (per model and weights, kept weakly) and runs those
batches there; gradients, Hessian rows and anything under a curvature context stay in PyTorch,
where they run through the classifier's fused twin (:mod:`hsets_widgets.model.fused`: batch norm folded
into the convolutions, made once per model and weights) when it has one.

The same logits to float32 rounding: a pass goes to ONNX Runtime only when the answer cannot
differ beyond that, i.e. the model is on the CPU in float32 and in eval mode, nothing asks for a
gradient, and no ``TorchFunctionMode`` (such as :func:`~hsets_widgets.hsets.curvature.curvature`)
is active. A model that cannot be exported (dynamic control flow, custom ops) or ONNX Runtime
missing: eager PyTorch, as before, said once in a :class:`ForwardWarning`.

``HSETS_FORWARD=torch`` (read at each call) turns both off: every pass runs the module as given.
Forward hooks on the module see only the passes that run in it (those, or all with
``HSETS_FORWARD=torch``); :func:`counting` counts the images of every pass made here.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
import weakref
from typing import Optional

import numpy as np
import torch
from torch.overrides import _get_current_function_mode_stack

from ..plumbing.memory import fit_batch, memory_room
from .fused import fold_batch_norm
from .models import forward_image_bytes

#: environment variable: ``torch`` runs every forward pass in eager PyTorch
BACKEND_ENV = "HSETS_FORWARD"
BACKENDS = ("onnx", "torch")


class ForwardWarning(UserWarning):
    """A classifier's forward passes stay in eager PyTorch (it could not be exported)."""


class _Exported:
    """One classifier's ONNX Runtime session and the weights it was made from."""

    def __init__(self, session, fingerprint):
        self.session = session
        self.fingerprint = fingerprint
        self.input_name = session.get_inputs()[0].name


_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FAILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_COUNTERS: list = []


def backend() -> str:
    """``onnx`` or ``torch``, from ``$HSETS_FORWARD`` (default ``onnx``)."""
    name = os.environ.get(BACKEND_ENV, "onnx").strip().lower() or "onnx"
    if name not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={name!r} is not a forward backend; use one of {', '.join(BACKENDS)}")
    return name


def _fingerprint(module: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or changed in place (fine-tuning in
    the same notebook must not be answered by the old weights' session).
    """
    return tuple((id(t), t._version) for t in (*module.parameters(), *module.buffers()))


class _Logits(torch.nn.Module):
    """The classifier as one module (its normalisation included) for the exporter."""

    def __init__(self, classifier):
        super().__init__()
        self.inner = classifier.module
        self.classifier = [classifier]   # a list: not registered as a submodule

    def forward(self, x):
        return self.classifier[0](x)


def _export(classifier, example: torch.Tensor):
    import onnxruntime as ort

    module = classifier.module
    flags = [p.requires_grad for p in module.parameters()]
    buf = io.BytesIO()
    try:
        for p in module.parameters():
            p.requires_grad_(False)   # the tracer refuses weights that need a gradient
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # eval(): the exporter restores the wrapper's mode on every submodule afterwards
            torch.onnx.export(_Logits(classifier).eval(), (example,), buf, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                              dynamo=False)
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    # freed after each batch, not held for the session's life (a 2 GB Binder session)
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def _eligible(classifier, x: torch.Tensor) -> bool:
    module = getattr(classifier, "module", None)
    if not isinstance(module, torch.nn.Module) or module.training:
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or type(x) is not torch.Tensor:
        return False
    if torch.is_grad_enabled() or x.requires_grad or _get_current_function_mode_stack():
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None:   # inside vmap / grad / jvp
        return False
    first = next(module.parameters(), None)
    return first is None or (first.device.type == "cpu" and first.dtype == torch.float32)


def session(classifier, example: torch.Tensor) -> Optional[_Exported]:
    """The classifier's ONNX Runtime session (exported on first use, again after its weights
    change), or None where it stays in PyTorch.
    """
    module = classifier.module
    fp = _fingerprint(module)
    with _LOCK:
        hit = _SESSIONS.get(module)
        if hit is not None and hit.fingerprint == fp:
            return hit
        if _FAILED.get(module) == fp:
            return None
        try:
            made = _Exported(_export(classifier, example[:1]), fp)
        except Exception as err:  # the exporter and onnxruntime raise many types
            _FAILED[module] = fp
            warnings.warn(f"{getattr(classifier, 'name', 'the model')}: forward passes stay in PyTorch "
                          f"(cannot export to ONNX: {str(err).splitlines()[0][:160]})", ForwardWarning, stacklevel=3)
            return None
        _SESSIONS[module] = made
        return made


def twin(classifier, x: torch.Tensor):
    """The classifier's fused twin (a module taking normalised images; made on first use and
    again after its weights change), or None where the module runs as it is: not an eval-mode
    float32 ``nn.Module`` on ``x``'s device, nothing to fold, or a twin that would not agree.
    """
    module = getattr(classifier, "module", None)
    normalize = getattr(classifier, "normalize", None)
    if not isinstance(module, torch.nn.Module) or module.training or normalize is None:
        return None
    first = next(module.parameters(), None)
    if x.dtype != torch.float32 or first is None or first.dtype != torch.float32 or first.device != x.device:
        return None

    fp = _fingerprint(module)
    with _LOCK:
        hit = _TWINS.get(module)
        if hit is None or hit[1] != fp:
            if _get_current_function_mode_stack() or torch._C._functorch.peek_interpreter_stack() is not None:
                # tracing here would bake a curvature context's smooth activations into the twin
                return None
            # a fresh, deterministic example, not x: x may be a vmap/grad wrapper here (Hessian
            # rows), where random numbers are refused
            shape = (2, *x.shape[1:])
            example = (torch.sin(torch.arange(math.prod(shape), dtype=torch.float32) * 0.7311) * 0.5 + 0.5)
            example = example.reshape(shape).to(x.device)
            with torch.no_grad():
                example = normalize(example)
            hit = (fold_batch_norm(module, example), fp)
            _TWINS[module] = hit
    return hit[0]


def _count(n: int) -> None:
    for counter in _COUNTERS:
        counter[0] += n


def logits(classifier, x: torch.Tensor) -> torch.Tensor:
    """``classifier(x)`` for a batch ``(B, 3, H, W)``: through ONNX Runtime or the fused twin
    where the answer is the same to float32 rounding (module docs), else the classifier itself.
    """
    name = backend()
    if name == "onnx" and _eligible(classifier, x):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return classifier(x)
        exported = session(classifier, x)
        if exported is not None:
            out = exported.session.run(None, {exported.input_name: np.ascontiguousarray(x.numpy())})[0]
            _count(len(out))
            return torch.from_numpy(out)
    if name == "onnx" and type(x) is torch.Tensor:
        fused = twin(classifier, x)
        if fused is not None:
            _count(len(x))
            return fused(classifier.normalize(x))
    return classifier(x)


def exported(classifier) -> bool:
    """Whether the classifier's current weights have an ONNX Runtime session (made by an
    earlier :func:`logits` call).
    """
    module = getattr(classifier, "module", None)
    hit = None if module is None else _SESSIONS.get(module)
    return hit is not None and hit.fingerprint == _fingerprint(module)


@contextlib.contextmanager
def counting():
    """``with counting() as n:``: ``n[0]`` counts the images run through ONNX Runtime or the
    fused twin inside the block (a forward hook on the module sees only the passes run in it).
    """
    counter = [0]
    _COUNTERS.append(counter)
    try:
        yield counter
    finally:
        _COUNTERS.remove(counter)


def images_per_pass(classifier, image: torch.Tensor, most: int) -> int:
    """Images per forward-only pass: ``most``, or fewer when that many would not fit in half the
    memory room (:func:`~hsets_widgets.plumbing.memory.memory_room`: the container's limit,
    ``MemAvailable`` or ``$HSETS_MEMORY_BUDGET``); on CUDA always ``most``. The one sizing of
    every forward-only loop (ROAD and insertion curves, the masking methods' coalitions, the
    interaction test's parts game). ``image`` is one ``(C, H, W)`` image on the model's device.
    """
    most = max(1, int(most))
    if most == 1 or image.device.type == "cuda":
        return most
    room = memory_room().bytes
    per_image = None if room is None else forward_image_bytes(classifier, image)
    return most if per_image is None else fit_batch(per_image, 0, most, room)
