"""hsets_widgets: H-Sets (Hessian Sets) feature-interaction explanations, with notebook widgets.

The engine (everything imported here) needs only PyTorch and NumPy; the notebook widgets
live in :mod:`hsets_widgets.widgets` and are imported on first use of ``Explorer``.
"""
from .heap import keep_freed_memory

keep_freed_memory()  # before the first tensor: passes reuse freed heap memory (heap.py)

from .curvature import CurvatureSpec, curvature  # noqa: E402
from .explain import Explainer, explain, prepare_image  # noqa: E402
from .explanation import Explanation, InteractionSet  # noqa: E402
from .growth import GrownSet, grow_set  # noqa: E402
from .hessian import HessianRows, ZeroHessianWarning, hessian_rows  # noqa: E402
from .idg import estimate_value  # noqa: E402
from .images import ImageError, example_image, load_image  # noqa: E402
from .integrated_gradients import integrated_gradients  # noqa: E402
from .models import Classifier, ModelError, load_classifier, wrap_module  # noqa: E402
from .presets import PRESETS, HSetsConfig, get_config  # noqa: E402
from .progress import Cancelled, CancelToken  # noqa: E402
from .seeds import select_seeds  # noqa: E402
from .thresholds import ThresholdRule  # noqa: E402

__version__ = "0.1.0"

__all__ = ["explain", "Explainer", "Explanation", "InteractionSet", "prepare_image",
           "integrated_gradients", "HessianRows", "hessian_rows", "ZeroHessianWarning",
           "CurvatureSpec", "curvature", "ThresholdRule", "GrownSet", "grow_set", "estimate_value",
           "select_seeds", "load_image", "example_image", "ImageError", "load_classifier",
           "wrap_module", "Classifier", "ModelError", "HSetsConfig", "PRESETS", "get_config",
           "CancelToken", "Cancelled", "Explorer", "Gallery"]


def __getattr__(name):
    if name in ("Explorer", "Gallery"):       # the widgets load ipywidgets: only when asked for
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'hsets_widgets' has no attribute {name!r}")
