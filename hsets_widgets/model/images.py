"""Loading and checking images.

Every engine function works on one image as a float tensor of shape ``(3, H, W)`` with
values in ``[0, 1]`` (RGB), already resized and cropped to the classifier's input size.
:func:`load_image` turns paths, PIL images, NumPy arrays and tensors into that form and
explains what is wrong with anything it cannot use.
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch

from ..plumbing.common import squeeze_batch, to_numpy
from ..plumbing.files import why_missing

ImageLike = Union[str, os.PathLike, "PIL.Image.Image", np.ndarray, torch.Tensor]  # noqa: F821

#: Images larger than this many pixels (before resizing) are refused: they are almost
#: always a mistake (a raw array of the wrong layout, a scan) and would exhaust memory.
MAX_PIXELS = 80_000_000

#: Photos shipped inside scikit-image's wheel, usable offline.
EXAMPLES = ("chelsea", "coffee", "astronaut", "rocket", "horse", "motorcycle_left")


class ImageError(ValueError):
    """An input image that cannot be used, with the reason and the fix."""


def example_image(name: str = "chelsea") -> np.ndarray:
    """One of scikit-image's bundled photos as a ``(H, W, 3)`` uint8 array.

    Parameters
    ----------
    name : str
        One of :data:`EXAMPLES` (``"chelsea"`` is a tabby cat, ``"coffee"`` a cup).
    """
    import skimage.data

    if name not in EXAMPLES:
        raise ImageError(f"unknown example image {name!r}; choose one of {', '.join(EXAMPLES)}")
    if name == "motorcycle_left":           # the left view of scikit-image's stereo pair
        return np.asarray(skimage.data.stereo_motorcycle()[0])
    return np.asarray(getattr(skimage.data, name)())


def _too_large(h: int, w: int) -> ImageError:
    return ImageError(f"image is too large ({h}x{w} pixels, more than {MAX_PIXELS:,}); downscale it first")


def _from_path(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageError(why_missing(path, "image file"))
    if path.is_dir():
        raise ImageError(f"{path} is a directory; pass one image file")
    return _decode(path, str(path))


def _decode(source, name: str) -> np.ndarray:
    """The pixels of an image file (a path, or a file object over its bytes): the one reader of
    files, so an upload in the Explorer is read exactly as the command line reads the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # opening only reads the header; the size is checked here before any decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise _too_large(h, w)
                im.load()
                return _from_pil(im)
    except Image.DecompressionBombError as err:
        if hasattr(source, "seek"):
            source.seek(0)
        raise _too_large(*_header_size(source)) from err
    except (UnidentifiedImageError, OSError) as err:
        raise ImageError(f"cannot read {name} as an image ({err}); is it a JPEG/PNG file?") from err


def _header_size(path) -> tuple:
    """``(H, W)`` from the file header, past PIL's decompression-bomb refusal (nothing is
    decoded; the limit is lifted only for this one header read).
    """
    from PIL import Image

    with _HEADER_LOCK:
        old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                w, h = im.size
        finally:
            Image.MAX_IMAGE_PIXELS = old
    return h, w


_HEADER_LOCK = threading.Lock()

#: PIL modes of one-channel images with more than 8 bits, read as arrays of their own depth
_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _upright(im):
    """``im`` as it is meant to be seen: phones store photos on their side with an EXIF
    orientation tag that every viewer applies, so the classifier must see it applied too.
    """
    from PIL import ImageOps

    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no reason to refuse the pixels
        return im
    return im if orientation in (None, 1) else ImageOps.exif_transpose(im)


def _from_pil(im) -> np.ndarray:
    if getattr(im, "n_frames", 1) > 1:
        warnings.warn(f"image has {im.n_frames} frames (animated); the first frame is explained",
                      stacklevel=4)
        im.seek(0)
    im = _upright(im)
    if im.mode in _DEEP_MODES:
        # converting these to RGB clips every value above 255 (a 16-bit photo turns white);
        # keep the array at its own depth and let the array path scale it
        warnings.warn(f"grayscale image (mode {im.mode}) was converted to RGB by repeating "
                      "the channel", stacklevel=4)
        arr = np.asarray(im)
        arr = arr.astype(np.uint16) if im.mode.startswith("I;16") else arr
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        warnings.warn(f"image has an alpha channel (mode {im.mode}); it was composited on white "
                      "and dropped", stacklevel=4)
        bg = __import__("PIL.Image", fromlist=["Image"]).new("RGB", im.size, (255, 255, 255))
        bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").split()[-1])
        return np.asarray(bg)
    if im.mode in ("L", "1"):
        warnings.warn(f"grayscale image (mode {im.mode}) was converted to RGB by repeating "
                      "the channel", stacklevel=4)
    return np.asarray(im.convert("RGB"))


def _to_hwc_float(arr: np.ndarray) -> np.ndarray:
    """Array in any common layout -> (H, W, 3) float32 in [0, 1]."""
    if arr.dtype == object or arr.size == 0:
        raise ImageError(f"image array is empty or not numeric (shape {arr.shape}, dtype {arr.dtype})")
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ImageError(f"got a batch of {arr.shape[0]} images (shape {arr.shape}); "
                             "explain one image at a time")
        arr = arr[0]
    if arr.ndim == 2:
        warnings.warn("grayscale image (2-D array) was converted to RGB by repeating the channel",
                      stacklevel=4)
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3:
        raise ImageError(f"image must have shape (H, W, 3), (3, H, W) or (H, W); got {arr.shape}")
    # channels-first if the first axis looks like channels and the last does not
    if arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, 2)
    c = arr.shape[2]
    if c == 1:
        warnings.warn("single-channel image was converted to RGB by repeating the channel",
                      stacklevel=4)
        arr = np.repeat(arr, 3, axis=2)
    elif c == 4:
        warnings.warn("RGBA image: the alpha channel was composited on white and dropped",
                      stacklevel=4)
        # the scale from the type it came in (a 16-bit RGBA is 0..65535), not its float copy
        scale = _integer_full_scale(arr) if np.issubdtype(arr.dtype, np.integer) else \
            (255.0 if arr.max() > 1.0 else 1.0)
        arr = arr.astype(np.float64)
        rgb, alpha = arr[..., :3] / scale, arr[..., 3:] / scale
        arr = rgb * alpha + (1.0 - alpha)
    elif c != 3:
        raise ImageError(f"image has {c} channels (shape {arr.shape}); expected 1 (grayscale), "
                         "3 (RGB) or 4 (RGBA)")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ImageError(f"image is too small ({arr.shape[0]}x{arr.shape[1]}); need at least 8x8")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise _too_large(arr.shape[0], arr.shape[1])
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0:
            raise ImageError(f"integer image has negative values (min {arr.min()})")
        top = _integer_full_scale(arr)
        return (arr.astype(np.float64) / top).astype(np.float32)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ImageError(f"image contains {bad} NaN or infinite values; clean or mask them first")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        if lo >= 0 and hi <= 255.0:
            warnings.warn(f"float image in [{lo:.3g}, {hi:.3g}] was taken as 0-255 and divided "
                          "by 255; pass values in [0, 1] to avoid this guess", stacklevel=4)
            return arr / 255.0
        raise ImageError(f"float image values lie in [{lo:.3g}, {hi:.3g}]; expected [0, 1] "
                         "(un-normalise it first: the classifier's normalisation is applied "
                         "by the engine)")
    return np.clip(arr, 0.0, 1.0)


def _integer_full_scale(arr: np.ndarray) -> float:
    """The value that means full white: 255 for 8 bits, 65535 for 16 bits; for wider
    integers (32-bit TIFFs) the smallest of 255, 65535 and the type's maximum that holds the
    data, said in a warning because the file does not say it.
    """
    if arr.dtype == np.uint8:
        return 255.0
    if arr.dtype == np.uint16:
        return 65535.0
    hi = int(arr.max())
    for top in (255, 65535, int(np.iinfo(arr.dtype).max)):
        if hi <= top:
            if top != 255:
                warnings.warn(f"{arr.dtype} image with values up to {hi} was taken as {top} = white",
                              stacklevel=5)
            return float(top)
    return float(np.iinfo(arr.dtype).max)  # pragma: no cover - hi never exceeds the dtype max


def load_image(image: ImageLike) -> np.ndarray:
    """Read ``image`` into a ``(H, W, 3)`` float32 RGB array in ``[0, 1]``.

    Accepts a file path, the bytes of an image file (an upload: read exactly as the file
    would be), a PIL image, a NumPy array or a tensor (``HWC``, ``CHW``, a batch of one,
    grayscale or RGBA; the last two are converted with a warning). 8-bit data is taken as 0-255
    and 16-bit data (16-bit PNG / TIFF, ``uint16`` arrays) as 0-65535; float arrays as
    ``[0, 1]``. Raises :class:`ImageError` naming the problem and its fix otherwise.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image_bytes(image)
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
        if name in EXAMPLES and not Path(name).exists():
            return _to_hwc_float(example_image(name))
        return _to_hwc_float(_from_path(Path(image)))
    if isinstance(image, torch.Tensor):
        return _to_hwc_float(to_numpy(image, None))
    if isinstance(image, np.ndarray):
        return _to_hwc_float(image)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _to_hwc_float(_from_pil(image))
    raise ImageError(f"cannot use an object of type {type(image).__name__} as an image; pass a "
                     "file path, a PIL image, a NumPy array or a torch tensor")


def load_image_bytes(data, name: str = "the uploaded file") -> np.ndarray:
    """:func:`load_image` of an image file's bytes (``name`` is how errors call it): the same
    reader as for a path, so a 16-bit PNG keeps its depth and an RGBA one is composited on white
    whether it is uploaded or named on the command line.
    """
    import io

    data = bytes(data)
    if not data:
        raise ImageError(f"{name} is empty; pick a JPEG or PNG file")
    return _to_hwc_float(_decode(io.BytesIO(data), name))


def resize_center_crop(image: np.ndarray, size: int, resize: int | None = None) -> np.ndarray:
    """Resize the short side to ``resize`` (default ``size / 0.875``) and crop ``size x size``.

    This is the usual ImageNet evaluation transform; the returned crop is what the classifier,
    the segmenter and every map in an explanation refer to.
    """
    from PIL import Image

    resize = resize or int(round(size / 0.875))
    h, w = image.shape[:2]
    scale = resize / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    warn_small_crop(h, w, size * size / (nh * nw))
    # resize each channel in float so no precision is lost to uint8
    arr = np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                               .resize((nw, nh), Image.BICUBIC)) for c in range(3)], axis=2)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.clip(arr[top:top + size, left:left + size], 0.0, 1.0).astype(np.float32)


#: a centre crop that keeps less than this share of the image is said in a warning (a 4:3
#: photo keeps 57%, 16:9 43%, a 3:1 panorama 25%)
MIN_CROP_SHARE = 1 / 3


def warn_small_crop(h: int, w: int, share: float) -> None:
    """Warn that the classifier sees only ``share`` of an ``h x w`` image, when it is small."""
    if share < MIN_CROP_SHARE:
        warnings.warn(f"the classifier sees only the centre {share:.0%} of this {w}x{h} image (a "
                      "square crop of its short side); crop it to the part you want explained",
                      stacklevel=3)


def to_tensor(image: np.ndarray, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(H, W, 3)`` array in [0, 1] -> ``(3, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device=device, dtype=dtype)


def check_image_tensor(x: torch.Tensor) -> torch.Tensor:
    """Validate an engine image tensor ``(3, H, W)`` in [0, 1]; raise :class:`ImageError`."""
    if not isinstance(x, torch.Tensor):
        raise ImageError(f"expected a torch tensor of shape (3, H, W), got {type(x).__name__}; "
                         "use hsets_widgets.load_image / prepare_image first")
    x = squeeze_batch(x)
    if x.dim() != 3 or x.shape[0] != 3:
        raise ImageError(f"expected an image tensor of shape (3, H, W), got {tuple(x.shape)}; "
                         "grayscale or RGBA inputs must go through load_image, which converts them")
    if not torch.isfinite(x).all():
        raise ImageError("image tensor contains NaN or infinite values")
    return x
