"""Evaluating attribution maps: sparsity (Gini), ROAD, baselines and a resumable runner.

One concept per module:

``sparsity``
    Gini index as Quantus' ``Sparseness`` computes it, support size, Gini at matched support.
``road``
    RemOve And Debias without retraining: noisy linear imputation, MoRF/LeRF curves.
``baselines``
    Gradient, SmoothGrad, random, Integrated Gradients and H-Sets maps from one classifier.
``insertion``
    Insertion and deletion curves (RISE) over the same pixel ranking.
``statistics``
    Bootstrap intervals of means and of paired differences between methods.
``datasets``
    Image folders, Imagenette and ImageNet labels.
``store``
    The evaluation folder's files: ``results.jsonl`` (resumable), per-image CSV and maps.
``report``
    Per-method means, mean curves as plots, a Markdown table.
``runner``
    ``hsets evaluate``: one image explained and scored, and the loop over images.
``cluster``
    The same run on Ray workers (``hsets evaluate --workers/--address``; the ``ray`` extra,
    imported only when used).
``sweep``
    One image's faithfulness across growth settings (``hsets sweep``, the Explorer's panel).
``regions``
    What one region contributes: its share of each map, and the class probability without it.
"""
from .baselines import BUILTIN_METHODS, METHODS, Method, MethodKind, attribute, check_map, get_method, register_method
from .datasets import ImageItem, collect_images, imagenette_items, label_from_path
from .road import (
                   NEIGHBOUR_WEIGHTS,
                   QUANTUS_PERCENTAGES,
                   ROAD_PERCENTAGES,
                   ROADCurve,
                   ROADResult,
                   imputation_system,
                   noisy_linear_impute,
                   relevance_order,
                   removal_mask,
                   road,
)
from .runner import DEFAULT_METHODS, run_evaluation
from .sparsity import (
                   AttributionShapeError,
                   gini,
                   gini_at_support,
                   gini_within_top,
                   keep_top,
                   matched_support,
                   pixel_map,
                   support_size,
)

__all__ = [
    "AttributionShapeError", "BUILTIN_METHODS", "METHODS", "MethodKind", "register_method", "DEFAULT_METHODS",
    "ImageItem", "Method",
    "NEIGHBOUR_WEIGHTS", "QUANTUS_PERCENTAGES", "ROAD_PERCENTAGES", "ROADCurve", "ROADResult",
    "attribute", "check_map", "collect_images", "get_method", "gini", "gini_at_support",
    "gini_within_top",
    "imagenette_items", "imputation_system", "keep_top", "label_from_path", "matched_support",
    "noisy_linear_impute", "pixel_map", "relevance_order", "removal_mask", "road",
    "run_evaluation", "support_size",
]
