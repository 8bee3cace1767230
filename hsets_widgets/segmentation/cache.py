"""Masks cached per image and segmenter settings, so no image is segmented twice.

The key of a result is a SHA-256 of the image's bytes (with its shape and dtype) and of the
segmenter's :meth:`cache_key` (model identity and every setting). Results live in an
in-memory LRU shared by all segmenters (:data:`DEFAULT_CACHE`) and, optionally, as ``.npz``
files in a folder, which survive restarts.

>>> seg = CachedSegmenter(MiniSamSegmenter(), disk="~/.cache/hsets_widgets/masks")
>>> a = seg(image); b = seg(image)      # the second call is a cache hit
>>> b.info["cache"]                      # 'memory'
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..plumbing.progress import report
from .base import Segmentation, SegmentationError, SegmenterBase, as_segmenter, segmenter_key

#: bump when the on-disk format changes
_DISK_FORMAT = 1


def image_digest(image) -> str:
    """SHA-256 of an image's pixels, shape and dtype (hex)."""
    arr = np.ascontiguousarray(np.asarray(image))
    h = hashlib.sha256()
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def settings_digest(key) -> str:
    """SHA-256 of a JSON-able description of a segmenter (hex)."""
    text = json.dumps(key, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return {"ndarray": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
                "shape": list(obj.shape)}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)




def _copy(seg: Segmentation, **info) -> Segmentation:
    return Segmentation(seg.masks.copy(), seg.labels.copy(), seg.source, {**seg.info, **info})


class MaskCache:
    """An LRU of segmentations in memory, optionally backed by a folder of ``.npz`` files.

    Parameters
    ----------
    maxsize : int
        Results kept in memory (a 224 x 224 result with 30 masks is ~1.5 MB).
    directory : path-like, optional
        Also store results here and look them up here after a memory miss.
    """

    def __init__(self, maxsize: int = 64, directory=None):
        self.maxsize = int(maxsize)
        self.directory = Path(os.path.expanduser(str(directory))) if directory else None
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.disk_hits = 0

    def __len__(self) -> int:
        return len(self._items)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def get(self, key: str):
        """The cached result for ``key`` as ``(Segmentation, where)`` or ``(None, None)``."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key], "memory"
        seg = self._read(key) if self.directory is not None else None
        if seg is not None:
            self.disk_hits += 1
            self._remember(key, seg)
            return seg, "disk"
        self.misses += 1
        return None, None

    def put(self, key: str, seg: Segmentation) -> None:
        """Store ``seg`` under ``key`` (in memory, and on disk when a directory is set)."""
        self._remember(key, seg)
        if self.directory is not None:
            self._write(key, seg)

    def _remember(self, key, seg):
        with self._lock:
            self._items[key] = seg
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def _write(self, key, seg):
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=np.packbits(seg.masks, axis=-1), shape=np.array(seg.masks.shape),
                                labels=seg.labels, meta=np.array(json.dumps(
                                    {"format": _DISK_FORMAT, "source": seg.source, "info": seg.info},
                                    default=_jsonable)))
        os.replace(tmp, path)

    def _read(self, key):
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(s) for s in z["shape"])
                masks = np.unpackbits(z["masks"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
                meta = json.loads(str(z["meta"]))
                labels = z["labels"]
            if meta.get("format") != _DISK_FORMAT:
                return None
            return Segmentation(masks, labels, meta["source"], meta["info"])
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None  # unreadable entry: recompute (and overwrite it)

    def clear(self, disk: bool = False) -> None:
        """Forget everything in memory (and delete the ``.npz`` files when ``disk``)."""
        with self._lock:
            self._items.clear()
        if disk and self.directory is not None and self.directory.is_dir():
            for p in self.directory.glob("*.npz"):
                p.unlink()

    def __repr__(self):
        return (f"MaskCache({len(self)}/{self.maxsize} in memory, directory={self.directory}, "
                f"hits={self.hits}, disk_hits={self.disk_hits}, misses={self.misses})")


#: the in-memory cache every :class:`CachedSegmenter` uses unless given another
DEFAULT_CACHE = MaskCache()


class CachedSegmenter(SegmenterBase):
    """Wrap a segmenter so each (image, settings) pair is segmented once.

    Parameters
    ----------
    segmenter : callable
        Any segmenter; it is cached only if :func:`segmenter_key` can describe it.
    cache : MaskCache, optional
        Default: :data:`DEFAULT_CACHE` (or a disk-backed cache when ``disk`` is given).
    disk : path-like, optional
        Folder for ``.npz`` copies of the results.
    extra_info : dict, optional
        Merged into every result's ``info`` (``segmenter="auto"`` records its choice here).

    Notes
    -----
    Results come back as copies, so changing one does not change the cache. ``info["cache"]``
    says where a result came from: ``"memory"``, ``"disk"``, ``"computed"`` or ``"off"``.
    """

    def __init__(self, segmenter, cache: MaskCache | None = None, disk=None, extra_info: dict | None = None):
        self.segmenter = as_segmenter(segmenter)
        if cache is None:
            cache = MaskCache(directory=disk) if disk else DEFAULT_CACHE
        elif disk:
            raise SegmentationError("give either cache= or disk=, not both")
        self.cache = cache
        self.extra_info = dict(extra_info or {})

    @property
    def name(self) -> str:
        """The wrapped segmenter's name."""
        return getattr(self.segmenter, "name", type(self.segmenter).__name__)

    def cache_key(self):
        """The wrapped segmenter's cache description (None when it is not cacheable)."""
        return segmenter_key(self.segmenter)

    def key(self, image) -> str | None:
        """The cache key of ``image`` for this segmenter."""
        desc = self.cache_key()
        if desc is None:
            return None
        return hashlib.sha256((image_digest(image) + settings_digest(desc)).encode()).hexdigest()

    def __call__(self, image, progress=None) -> Segmentation:
        """Cached masks of ``image``; see the wrapped segmenter.

        Parameters
        ----------
        image : ndarray, shape (H, W, 3)
            Float in [0, 1].
        progress : callable, optional
            ``progress("segmentation", done, total)``; a cache hit reports ``(1, 1)`` at once.
        """
        key = self.key(image)
        if key is not None:
            seg, where = self.cache.get(key)
            if seg is not None:
                report(progress, "segmentation", 1, 1)
                return _copy(seg, cache=where, **self.extra_info)
        seg = self.segmenter(image, progress=progress)
        if key is not None:
            self.cache.put(key, _copy(seg))
        return _copy(seg, cache="computed" if key is not None else "off", **self.extra_info)

    def __getattr__(self, name):
        if name == "segmenter":  # not set yet (during unpickling)
            raise AttributeError(name)
        return getattr(self.segmenter, name)

    def __repr__(self):
        return f"CachedSegmenter({self.segmenter!r})"
