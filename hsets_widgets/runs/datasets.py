"""The images an evaluation runs on: folders of files, Imagenette, and their ImageNet labels.

Labels (optional, used for ``label_accuracy``) come from file names that start with an
ImageNet wnid (``n01440764_tench.JPEG``), from parent folders named by wnid (ImageFolder
layout), by class index, or by class name.
"""
from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch

from hsets_widgets.plumbing.files import why_missing

from ..model.images import load_image, resize_center_crop, to_tensor
from ..plumbing.downloads import OFFLINE_ENV, DownloadsOff, offline

#: File extensions taken as images when a folder is scanned (explicit files are always tried).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


_WNID = re.compile(r"^(n\d{8})(?:[_\-.]|$)")


def imagenet_wnids() -> list:
    """The 1000 ImageNet-1k wnids in sorted order (index = output index of the classifier)."""
    text = resources.files("hsets_widgets").joinpath("data/imagenet_wnids.txt").read_text()
    wnids = [w.strip() for w in text.splitlines() if w.strip()]
    if len(wnids) != 1000:
        raise RuntimeError(f"hsets_widgets/data/imagenet_wnids.txt holds {len(wnids)} wnids, not 1000")
    return wnids


def wnid_to_index() -> dict:
    """``{"n01440764": 0, ...}``."""
    return {w: i for i, w in enumerate(imagenet_wnids())}


def _norm_name(s: str) -> str:
    return re.sub(r"[\s_\-]+", " ", s.strip().lower())


def label_from_path(path: Union[str, Path], class_names: Optional[Sequence[str]] = None,
                    wnids: Optional[dict] = None) -> Optional[int]:
    """Class index of an image file from its name or folder, or None.

    Tried in order: a file name starting with a wnid (``n01440764_tench.JPEG``); a parent
    folder named by a wnid; a parent folder named by an integer class index; a parent folder
    named by one of ``class_names`` (case, spaces and underscores ignored).
    """
    path = Path(path)
    wnids = wnid_to_index() if wnids is None else wnids
    m = _WNID.match(path.name)
    if m and m.group(1) in wnids:
        return wnids[m.group(1)]
    parent = path.parent.name
    if parent in wnids:
        return wnids[parent]
    if re.fullmatch(r"[0-9]+", parent):        # ASCII digits only: str.isdigit takes "²" too
        return class_index(int(parent), path, class_names)
    if class_names:
        lookup = {_norm_name(n): i for i, n in enumerate(class_names)}
        if _norm_name(parent) in lookup:
            return lookup[_norm_name(parent)]
    return None


def class_index(index: int, path: Path, class_names: Optional[Sequence[str]]) -> Optional[int]:
    """``index`` if the model has that class, else None with a warning naming the folder (a
    label the model cannot predict would make every accuracy 0 or crash the scoring).
    """
    n = len(class_names) if class_names else None
    if n is None or index < n:
        return index
    warnings.warn(f"folder {path.parent} is named like class {index}, but the model has {n} classes; "
                  "its images are evaluated without a label", stacklevel=3)
    return None


@dataclass
class ImageItem:
    """One image to evaluate: its path, its label (or None) and its resume key."""

    path: Path
    label: Optional[int] = None

    @property
    def key(self) -> str:
        """The resolved path, which identifies the image in ``results.jsonl``."""
        return str(self.path.resolve())

    @property
    def slug(self) -> str:
        """A file-name-safe, collision-free name for the per-image outputs."""
        stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", self.path.stem)[:80]
        return f"{stem}-{hashlib.sha1(self.key.encode()).hexdigest()[:8]}"


def collect_images(paths: Iterable[Union[str, Path]], class_names: Optional[Sequence[str]] = None) -> list:
    """Image files named in ``paths`` (files, or folders scanned recursively), sorted.

    Files given explicitly are kept whatever their extension (an unreadable one is skipped
    and counted later); files inside folders are kept if their extension is an image one.
    Raises FileNotFoundError for a path that does not exist.
    """
    wnids = wnid_to_index()
    found = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*")
                            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(why_missing(p, "input") if p.is_symlink() else f"no such file or folder: {p}")
    seen, items = set(), []
    for f in found:
        k = str(f.resolve())
        if k not in seen:
            seen.add(k)
            items.append(ImageItem(f, label_from_path(f, class_names, wnids)))
    return items


def imagenette_items(root: Union[str, Path], split: str = "val", size: str = "320px",
                     download: bool = True) -> list:
    """Images of torchvision's Imagenette (downloaded into ``root`` if missing), with
    ImageNet-1k labels.

    Raises RuntimeError with what to do instead when the download fails (offline).
    """
    from torchvision.datasets import Imagenette

    if download and offline():
        try:                                  # already extracted in root: no download needed
            return imagenette_items(root, split, size, download=False)
        except RuntimeError as err:
            url = Imagenette._ARCHIVES.get(size, ("?",))[0]
            raise DownloadsOff(f"not downloading Imagenette ({url}) into {root}: downloads are off "
                               f"({OFFLINE_ENV} is set). Download and extract it into that folder "
                               "elsewhere, or pass a folder of images instead") from err
    try:
        ds = Imagenette(str(root), split=split, size=size, download=download)
    except Exception as err:  # noqa: BLE001 - urllib, tarfile and torchvision raise many types
        url = Imagenette._ARCHIVES.get(size, ("?",))[0]
        raise RuntimeError(
            f"could not get Imagenette ({size}, {split}) into {root}: {type(err).__name__}: {err}. "
            f"Offline? Download {url} elsewhere, extract it into {root}, and rerun; or pass a "
            "folder of images (ImageFolder layout or wnid-named files) instead of --imagenette") from err
    image_root = Path(getattr(ds, "_image_root", Path(root)))
    return collect_images([image_root])


def load_item(item: ImageItem, size: int) -> torch.Tensor:
    """Read, resize and centre-crop one image to ``(3, size, size)`` in [0, 1]."""
    arr = load_image(item.path)
    if arr.shape[:2] != (size, size):
        arr = resize_center_crop(arr, size)
    return to_tensor(arr)
