"""hsets_widgets: H-Sets (Hessian Sets) feature-interaction explanations, with notebook widgets.

The engine (everything imported here) needs only PyTorch and NumPy; the notebook widgets
live in :mod:`hsets_widgets.widgets` and are imported on first use of ``Explorer``.
"""
from .plumbing.heap import keep_freed_memory

keep_freed_memory()  # before the first tensor: passes reuse freed heap memory (heap.py)

from .hsets.curvature import CurvatureSpec, curvature  # noqa: E402
from .hsets.explain import Explainer, explain, prepare_image  # noqa: E402
from .hsets.explanation import Explanation, InteractionSet  # noqa: E402
from .hsets.growth import GrownSet, grow_set  # noqa: E402
from .hsets.hessian import HessianRows, ZeroHessianWarning, hessian_rows  # noqa: E402
from .hsets.idg import estimate_value  # noqa: E402
from .hsets.integrated_gradients import integrated_gradients  # noqa: E402
from .hsets.presets import PRESETS, HSetsConfig, get_config  # noqa: E402
from .hsets.seeds import select_seeds  # noqa: E402
from .hsets.thresholds import ThresholdRule  # noqa: E402
from .model.images import ImageError, example_image, load_image  # noqa: E402
from .model.models import Classifier, ModelError, load_classifier, wrap_module  # noqa: E402
from .plumbing.progress import Cancelled, CancelToken  # noqa: E402

__version__ = "0.1.0"

#: the evaluation API, loaded on first use so that ``import hsets_widgets`` stays the engine's cost:
#: name -> the module that defines it (one home each; the folders' ``__init__`` files export nothing,
#: so no function hides its module)
LAZY = {
    "Explorer": "widgets", "Gallery": "widgets",
    **dict.fromkeys(["attribute", "attribute_sets", "get_method", "register_method", "METHODS",
                     "BUILTIN_METHODS", "MethodKind"], "methods.registry"),
    **dict.fromkeys(["Method", "MapWithSets", "PixelSet", "check_map", "AttributionShapeError"], "methods.protocol"),
    **dict.fromkeys(["gini", "gini_at_support", "gini_within_top", "support_size", "matched_support",
                     "keep_top", "pixel_map"], "metrics.sparsity"),
    **dict.fromkeys(["road", "ROADCurve", "ROADResult", "noisy_linear_impute", "imputation_system",
                     "relevance_order", "removal_mask", "NEIGHBOUR_WEIGHTS", "ROAD_PERCENTAGES",
                     "QUANTUS_PERCENTAGES"], "metrics.road"),
    "insertion_deletion": "metrics.insertion",
    **dict.fromkeys(["interaction_test", "set_tests", "explainer_test", "interaction_metrics", "InteractionTest"],
                    "metrics.interactions"),
    **dict.fromkeys(["region_effect", "RegionEffect"], "metrics.regions"),
    **dict.fromkeys(["run_evaluation", "DEFAULT_METHODS"], "runs.runner"),
    **dict.fromkeys(["collect_images", "imagenette_items", "label_from_path", "ImageItem"], "runs.datasets"),
    "open_run": "runs.records",
}

__all__ = ["explain", "Explainer", "Explanation", "InteractionSet", "prepare_image",
           "integrated_gradients", "HessianRows", "hessian_rows", "ZeroHessianWarning",
           "CurvatureSpec", "curvature", "ThresholdRule", "GrownSet", "grow_set", "estimate_value",
           "select_seeds", "load_image", "example_image", "ImageError", "load_classifier",
           "wrap_module", "Classifier", "ModelError", "HSetsConfig", "PRESETS", "get_config",
           "CancelToken", "Cancelled", *LAZY]


def __getattr__(name):
    if name in LAZY:
        from importlib import import_module

        return getattr(import_module(f".{LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hsets_widgets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(LAZY))
