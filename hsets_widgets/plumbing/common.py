"""Small conversions every part of the toolkit needs, written once.

Tensors to float64 arrays, one image out of a batch of one, the compute device, and the
warning that ``segmenter="auto"`` gives when a run chose its segmenter for the user (batch
runs that already report their segmenter hide it). Nothing here knows about the method.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Union

import numpy as np
import torch

#: the text every ``segmenter="auto"`` warning starts with (:func:`quiet_auto_segmenter`)
AUTO_SEGMENTER_WARNING = "segmenter='auto'"


def to_numpy(a: Union[torch.Tensor, np.ndarray, list, float], dtype=np.float64) -> np.ndarray:
    """``a`` as a NumPy array of ``dtype`` (float64 unless told; None keeps a tensor's own dtype,
    where a float32 map must stay float32 to give the same numbers); a tensor is detached and
    moved to the CPU first.
    """
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        return a.numpy() if dtype is None else a.to(torch.from_numpy(np.zeros(0, dtype)).dtype).numpy()
    return np.asarray(a, dtype=dtype)


def single_image(x, what: str = "image"):
    """``x`` without a leading batch axis of one: ``(1, C, H, W)`` -> ``(C, H, W)``.

    Works for tensors and arrays; anything but a 3-D image (after the squeeze) is an error
    that names ``what`` and the shape it got.
    """
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"expected one {what} (3, H, W), got shape {tuple(x.shape)}")
    return x


def squeeze_batch(x):
    """``x[0]`` when ``x`` has a leading batch axis of one (4-D), else ``x`` unchanged."""
    return x[0] if x.ndim == 4 and x.shape[0] == 1 else x


def resolve_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU; anything else as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def quiet_auto_segmenter():
    """Hide the ``segmenter='auto' picked ...`` warning inside the block (batch runs record
    the segmenter they used instead of warning once per image).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=AUTO_SEGMENTER_WARNING)
        yield


class Registry(dict):
    """A name -> kind table that the settings, the engine, the CLI and the menus all read.

    ``registry.register(kind)`` adds ``kind`` under ``kind.name`` (replacing one of the same
    name) after checking that it is a ``kind_type``; the rest is a plain dict.
    """

    def __init__(self, kind_type: type, what: str):
        super().__init__()
        self.kind_type, self.what = kind_type, what

    def register(self, kind):
        """Add ``kind`` (or replace the one of the same name); returns it."""
        if not isinstance(kind, self.kind_type):
            raise TypeError(f"a {self.what} is registered as a {self.kind_type.__name__}, "
                            f"got {type(kind).__name__}")
        self[kind.name] = kind
        return kind
