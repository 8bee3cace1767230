"""hsets_widgets: H-Sets (Hessian Sets) feature-interaction explanations, with notebook widgets.

The engine (everything imported here) needs only PyTorch and NumPy; the notebook widgets
live in :mod:`hsets_widgets.widgets` and are imported on first use of ``Explorer``.
"""
from .curvature import CurvatureSpec, curvature
from .explain import Explainer, explain, prepare_image
from .explanation import Explanation, InteractionSet
from .growth import GrownSet, grow_set
from .hessian import HessianRows, ZeroHessianWarning, hessian_rows
from .idg import estimate_value
from .images import ImageError, example_image, load_image
from .integrated_gradients import integrated_gradients
from .models import Classifier, ModelError, load_classifier, wrap_module
from .presets import PRESETS, HSetsConfig, get_config
from .progress import Cancelled, CancelToken
from .seeds import select_seeds
from .thresholds import ThresholdRule

__version__ = "0.1.0"

__all__ = ["explain", "Explainer", "Explanation", "InteractionSet", "prepare_image",
           "integrated_gradients", "HessianRows", "hessian_rows", "ZeroHessianWarning",
           "CurvatureSpec", "curvature", "ThresholdRule", "GrownSet", "grow_set", "estimate_value",
           "select_seeds", "load_image", "example_image", "ImageError", "load_classifier",
           "wrap_module", "Classifier", "ModelError", "HSetsConfig", "PRESETS", "get_config",
           "CancelToken", "Cancelled", "Explorer"]


def __getattr__(name):
    if name == "Explorer":
        from .widgets import Explorer

        return Explorer
    raise AttributeError(f"module 'hsets_widgets' has no attribute {name!r}")
