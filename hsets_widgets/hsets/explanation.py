"""The result of an H-Sets run, and its lossless file format (``.npz``).

Arrays go into the archive as they are (no pickling); settings and per-set scalars are one
JSON document inside it. ``Explanation.load(path)`` gives back an equal object.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..plumbing.files import atomic_path, dumps, strict, why_missing
from .figures import compare_figure, heatmap_figure
from .growth import GrowthStep
from .heatmap import overlay, set_pixel_mask

FORMAT_VERSION = 1


@dataclass
class InteractionSet:
    """One interaction set.

    Attributes
    ----------
    seed : int
        Seed feature index.
    seed_yx : tuple
        Seed pixel ``(y, x)``.
    segment : int
        Label of the segment the seed came from (0 for a user-chosen seed).
    members : ndarray of int
        Feature indices in joining order (seed first).
    value, stderr : float
        Set value and its standard error (see ``value_kind``).
    value_kind : str
        ``"mean"`` (mean of ``|IDG|`` over non-empty subsets) or ``"sample-sum"``.
    signed_score : float
        Signed IDG (or abs-gradient score) of the whole set.
    log2_total : float
        ``log2`` of the sum of ``|IDG|`` over all subsets (the paper's ``v(I)``).
    exact : bool
        Value computed over every subset.
    n_samples : int
    steps : list of GrowthStep
        The merge trace.
    stopped : str
        Why growth stopped (``nu``, ``exhausted``, ``max_rows``).
    samples : ndarray
        ``|IDG|`` of each sampled subset, in draw order.
    banzhaf : ndarray
        Banzhaf value of each member (member order) in the set's game ``|IDG|``.
    shares : ndarray
        Each member's share of ``value`` (each subset's score split equally among its members).
    """

    seed: int
    seed_yx: tuple
    segment: int
    members: np.ndarray
    value: float
    stderr: float
    value_kind: str
    signed_score: float
    log2_total: float
    exact: bool
    n_samples: int
    steps: list = field(default_factory=list)
    stopped: str = "exhausted"
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    banzhaf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shares: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return int(len(self.members))

    def summary(self) -> dict:
        """The set without its arrays, JSON-ready (for ``summary.json``)."""
        return {"seed": int(self.seed), "seed_yx": [int(v) for v in self.seed_yx],
                "segment": int(self.segment), "size": len(self), "value": float(self.value),
                "stderr": float(self.stderr), "value_kind": self.value_kind,
                "signed_score": float(self.signed_score), "log2_total": float(self.log2_total),
                "exact": bool(self.exact), "n_samples": int(self.n_samples),
                "rows_used": len(self.steps), "stopped": self.stopped}


@dataclass
class Explanation:
    """Everything an H-Sets run produced.

    Attributes
    ----------
    image : ndarray (H, W, 3) float32
        The classifier's input crop in [0, 1].
    target : int
        Explained class.
    class_name : str
    probability : float
        Softmax probability of ``target``.
    sets : list of InteractionSet
    heatmap : ndarray (H, W)
        Sets painted with their values.
    ig : ndarray (3, H, W)
        The attribution used for seeds (IG or plain gradient; see ``settings``).
    labels : ndarray (H, W) int32
        Segment label map used for seeds.
    features : str
    settings : dict
        The :class:`~hsets_widgets.hsets.presets.HSetsConfig` used, plus model and segmenter names.
    timings : dict
        Seconds per stage.
    info : dict
        Other facts (IG completeness error, rows computed, ...).
    """

    image: np.ndarray
    target: int
    class_name: str
    probability: float
    sets: list
    heatmap: np.ndarray
    ig: np.ndarray
    labels: np.ndarray
    features: str = "pixel"
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    # ---- summaries ---------------------------------------------------------------------
    def summary(self) -> dict:
        """JSON-ready summary (what ``summary.json`` holds)."""
        return {"target": int(self.target), "class_name": self.class_name,
                "probability": float(self.probability), "features": self.features,
                "sets": [s.summary() for s in self.sets], "settings": self.settings,
                "timings": self.timings, "info": self.info}

    def set_mask(self, i: int) -> np.ndarray:
        """Pixel mask ``(H, W)`` of set ``i``."""
        h, w = self.heatmap.shape
        return set_pixel_mask(self.sets[i].members, (3, h, w), self.features)

    # ---- files -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write to ``path`` (``.npz``); :meth:`load` reads it back unchanged.

        The file is written to a temporary name in the same folder and renamed when
        complete, so a full disk never leaves a truncated ``.npz``; a failure raises
        :class:`~hsets_widgets.plumbing.files.OutputError` and this object is unchanged.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"image": self.image, "heatmap": self.heatmap, "ig": self.ig, "labels": self.labels}
        meta_sets = []
        for k, s in enumerate(self.sets):
            arrays[f"set{k}_members"] = np.asarray(s.members, np.int64)
            arrays[f"set{k}_samples"] = np.asarray(s.samples, np.float64)
            arrays[f"set{k}_banzhaf"] = np.asarray(s.banzhaf, np.float64)
            arrays[f"set{k}_shares"] = np.asarray(s.shares, np.float64)
            arrays[f"set{k}_step_rows"] = np.asarray([st.row for st in s.steps], np.int64)
            arrays[f"set{k}_step_counts"] = np.asarray([len(st.added) for st in s.steps], np.int64)
            arrays[f"set{k}_step_added"] = np.asarray(
                [i for st in s.steps for i in st.added], np.int64)
            stored = ("members", "samples", "steps", "banzhaf", "shares")
            d = {key: val for key, val in asdict(s).items() if key not in stored}
            d["seed_yx"] = [int(v) for v in s.seed_yx]
            meta_sets.append(d)
        meta = {"format": FORMAT_VERSION, "target": int(self.target), "class_name": self.class_name,
                "probability": float(self.probability), "features": self.features,
                "settings": self.settings, "timings": self.timings, "info": self.info,
                "sets": meta_sets}
        arrays["meta"] = np.frombuffer(dumps(meta).encode(), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path) -> Explanation:
        """Read an explanation written by :meth:`save`."""
        import zipfile

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(why_missing(path, "explanation file"))
        not_ours = (f"{path} is not an H-Sets explanation file (write one with "
                    "Explanation.save or hsets explain)")
        try:
            z = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise ValueError(f"{not_ours}: {err}") from err
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{not_ours}: it holds a single array")
        with z:
            too_big = _oversized_entry(z)
            if too_big:
                raise ValueError(f"{path} is a damaged H-Sets explanation file ({too_big})")
            try:
                meta = json.loads(bytes(z["meta"]).decode())
            except RecursionError:
                raise ValueError(f"{not_ours}: its settings record is nested too deeply to be ours") from None
            except (KeyError, ValueError, zipfile.BadZipFile, OSError) as err:
                raise ValueError(f"{not_ours}: no readable settings record ({err})") from err
            if not isinstance(meta, dict) or "format" not in meta:
                raise ValueError(not_ours)
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"{path} has format {meta.get('format')}, this version reads "
                                 f"{FORMAT_VERSION}")
            try:
                return check_contents(cls._from_archive(z, meta))
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, zipfile.BadZipFile) as err:
                raise ValueError(f"{path} is a damaged H-Sets explanation file ({type(err).__name__}: {err})") from err

    @classmethod
    def _from_archive(cls, z, meta) -> Explanation:
        sets = []
        for k, d in enumerate(meta["sets"]):
            rows, counts, added = (z[f"set{k}_step_rows"], z[f"set{k}_step_counts"], z[f"set{k}_step_added"])
            ends = np.cumsum(counts)
            steps = [GrowthStep(int(r), [int(i) for i in added[e - c:e]]) for r, c, e in zip(rows, counts, ends)]
            d = dict(d)
            d["seed_yx"] = tuple(d["seed_yx"])
            for key in ("value", "stderr", "signed_score", "log2_total"):
                if d.get(key) is None:  # strict JSON wrote an undefined number as null
                    d[key] = float("nan")
            sets.append(InteractionSet(members=z[f"set{k}_members"], samples=z[f"set{k}_samples"],
                                       banzhaf=z[f"set{k}_banzhaf"], shares=z[f"set{k}_shares"],
                                       steps=steps, **d))
        return cls(image=z["image"], target=meta["target"], class_name=meta["class_name"],
                   probability=meta["probability"], sets=sets, heatmap=z["heatmap"], ig=z["ig"],
                   labels=z["labels"], features=meta["features"], settings=meta["settings"],
                   timings=meta["timings"], info=meta["info"])

    def save_heatmap_png(self, path) -> Path:
        """Write the heatmap over the photo as a PNG (upscaled, colour bar, numbered seeds;
        see :func:`hsets_widgets.hsets.figures.heatmap_figure`).
        """
        return heatmap_figure(self, path)

    def save_compare_png(self, path, others: Optional[dict] = None) -> Path:
        """Write the photo, the H-Sets heatmap and IG side by side as a PNG, then the maps of
        ``others`` (method name -> map, or a map with sets; see
        :func:`hsets_widgets.hsets.figures.compare_figure`).
        """
        return compare_figure(self, path, others=others)

    # ---- static views (notebooks shown without a kernel: GitHub, nbviewer) ------------------
    def preview(self, scale: Optional[int] = None) -> np.ndarray:
        """The photo and the heatmap over it, side by side, as ``(H, 2W, 3)`` uint8 (upscaled to
        at least 224 px so a small crop stays readable). Drawn without matplotlib.
        """
        img = np.clip(np.asarray(self.image, np.float64), 0, 1)
        both = np.concatenate([(img * 255 + 0.5).astype(np.uint8), overlay(img, self.heatmap)], axis=1)
        k = scale or max(1, -(-224 // max(img.shape[:2])))
        return np.repeat(np.repeat(both, k, axis=0), k, axis=1)

    def _repr_png_(self) -> bytes:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(self.preview()).save(buf, format="PNG")
        return buf.getvalue()

    def _repr_html_(self) -> str:
        import base64
        import html

        rows = "".join(
            f"<tr><td>#{k + 1}</td><td>{tuple(int(v) for v in s.seed_yx)}</td><td>{len(s)}</td>"
            f"<td>{s.value:.4g} &plusmn; {s.stderr:.2g}</td></tr>" for k, s in enumerate(self.sets))
        png = base64.b64encode(self._repr_png_()).decode()
        painted = 100 * float((np.asarray(self.heatmap) != 0).mean())
        return (f"<div class='hsets-explanation'><b>H-Sets explanation</b> of class "
                f"<b>{html.escape(str(self.class_name))}</b> ({int(self.target)}, p = {self.probability:.2f}), "
                f"preset <code>{html.escape(str(self.settings.get('preset', '?')))}</code>, "
                f"{len(self.sets)} sets, {painted:.1f}% of the pixels painted<br>"
                f"<img src='data:image/png;base64,{png}' alt='the photo and its H-Sets heatmap'/>"
                "<table><tr><th>set</th><th>seed (y, x)</th><th>pixels</th><th>value &plusmn; s.e.</th></tr>"
                f"{rows}</table></div>")


def _oversized_entry(z) -> str:
    """Why an array of the archive ``z`` cannot be what its header declares (a header claiming
    terabytes in a small file would be a MemoryError when read), or ``""``.
    """
    for info in z.zip.infolist():
        try:
            with z.zip.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                shape, _, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(fh))
        except Exception:  # noqa: BLE001 - unreadable headers are reported when the array is read
            continue
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared > info.file_size:
            return (f"array {info.filename.removesuffix('.npy')} declares {declared:,} bytes, its file holds "
                    f"{info.file_size:,}")
    return ""


def _is_whole(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _finite_numbers(arr, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} holds {arr.dtype} values, not numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{what} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def check_contents(e: Explanation) -> Explanation:
    """``e`` if its arrays and fields fit together, else ValueError naming the first that does
    not: a file edited or written by other code could otherwise paint members at wrapped-around
    indices (NumPy reads -1 as the last pixel), a heatmap of another size, NaN pixels, a seed
    outside the image or a set that counts its members twice.
    """
    image = _finite_numbers(e.image, "image")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {image.shape}, not (H, W, 3)")
    if image.size and (image.min() < 0 or image.max() > 1):
        raise ValueError(f"image values lie in [{image.min():.3g}, {image.max():.3g}], not [0, 1]")
    h, w = image.shape[:2]
    for name, shape in (("heatmap", (h, w)), ("labels", (h, w)), ("ig", (3, h, w))):
        if np.shape(getattr(e, name)) != shape:
            raise ValueError(f"{name} has shape {np.shape(getattr(e, name))}, the image needs {shape}")
        _finite_numbers(getattr(e, name), name)
    if np.asarray(e.labels).dtype.kind not in "iu":
        raise ValueError(f"labels hold {np.asarray(e.labels).dtype} values, not whole numbers")
    if not _is_whole(e.target) or e.target < 0:
        raise ValueError(f"target {e.target!r} is not a class index (a whole number >= 0)")
    p = e.probability
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 <= p <= 1):
        raise ValueError(f"probability {p!r} is not a number in [0, 1]")
    if e.features not in ("pixel", "channel"):
        raise ValueError(f"features {e.features!r} is not 'pixel' or 'channel'")
    n = h * w * (3 if e.features == "channel" else 1)
    for k, s in enumerate(e.sets):
        check_indices(s.members, n, f"set {k} members")
        if len(np.unique(np.asarray(s.members))) != len(s.members):
            raise ValueError(f"set {k} members list {len(s.members) - len(np.unique(s.members))} feature(s) twice")
        yx = tuple(s.seed_yx)
        if len(yx) != 2 or not all(_is_whole(v) for v in yx) or not (0 <= yx[0] < h and 0 <= yx[1] < w):
            raise ValueError(f"set {k} seed pixel {list(yx)} lies outside the {h} x {w} image")
        check_indices([s.seed], n, f"set {k} seed")
        check_indices([st.row for st in s.steps], n, f"set {k} step rows")
        check_indices([i for st in s.steps for i in st.added], n, f"set {k} step additions")
    return e


def check_indices(values, n: int, what: str) -> None:
    """ValueError unless ``values`` are whole numbers in ``[0, n)``."""
    arr = np.asarray(values)
    if arr.size and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{what} are not a list of whole numbers (dtype {arr.dtype}, shape {arr.shape})")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{what} lie in [{arr.min()}, {arr.max()}], outside the image's {n} features")


def equal(a: Explanation, b: Explanation) -> bool:
    """Whether ``a`` and ``b`` hold the same data (:func:`first_difference` says where not)."""
    return first_difference(a, b) is None


def first_difference(a: Explanation, b: Explanation) -> Optional[str]:
    """The name of the first field where ``a`` and ``b`` differ, or None when they hold the same data."""
    for name in ("image", "heatmap", "ig", "labels"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            return name
    for name in ("target", "class_name", "probability", "features", "settings", "timings", "info"):
        if getattr(a, name) != getattr(b, name):
            return name
    if len(a.sets) != len(b.sets):
        return "sets"
    for k, (s, t) in enumerate(zip(a.sets, b.sets)):
        if not (np.array_equal(s.members, t.members) and np.array_equal(s.samples, t.samples)
                and np.array_equal(s.banzhaf, t.banzhaf) and np.array_equal(s.shares, t.shares)):
            return f"sets[{k}]"

        if strict(s.summary()) != strict(t.summary()) or \
                [(x.row, x.added) for x in s.steps] != [(x.row, x.added) for x in t.steps]:
            return f"sets[{k}]"
    return None
