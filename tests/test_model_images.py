"""Loading images (model/images.py): other bit depths, EXIF rotation, animated, huge and
panoramic pictures, bad files and arrays, bytes read as the file is; examples, then properties
(hypothesis): any mode, format or array comes out as (H, W, 3) in [0, 1] the right way up, or is
refused with an ImageError."""
import math
import warnings

import numpy as np
import pytest
from conftest import FAST, FILES
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from hsets_widgets.hsets.explanation import Explanation
from hsets_widgets.model.images import ImageError, load_image, resize_center_crop
from hsets_widgets.model.models import ModelError, load_checkpoint


# ---- files and arrays a user meets --------------------------------------------------------------
def test_16_bit_png_is_not_explained_as_white(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64), (64, 1))
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="grayscale"):
        a = load_image(tmp_path / "g16.png")
    assert a.min() == 0.0 and a.max() == 1.0 and 0.45 < a.mean() < 0.55


def test_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10, :, 0] = 255                           # a red band along the top
    stored = np.rot90(upright, 1)                      # how a phone stores it: on its side
    exif = Image.Exif()
    exif[0x0112] = 6                                   # "rotate 90 degrees clockwise to view"
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.png", exif=exif)
    a = load_image(tmp_path / "phone.png")
    assert a.shape == (40, 60, 3)
    np.testing.assert_allclose(a, upright / 255.0, atol=1e-6)
    with Image.open(tmp_path / "phone.png") as im:     # a PIL image of the file likewise
        np.testing.assert_allclose(load_image(im), upright / 255.0, atol=1e-6)


def test_huge_image_gets_the_too_large_message(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "huge.png")


def test_animated_gif_warns_that_only_the_first_frame_counts(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="2 frames"):
        load_image(tmp_path / "a.gif")


@pytest.mark.parametrize("make, match", [
    (lambda p: None, "image file not found"),
    (lambda p: p.write_bytes(b""), "cannot read"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n truncated"), "cannot read"),
    (lambda p: p.write_text("just text"), "cannot read"),
])
def test_missing_empty_truncated_and_non_image_files(tmp_path, make, match):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(ImageError, match=match):
        load_image(p)


def test_tiny_nan_and_out_of_range_images():
    with pytest.raises(ImageError, match="too small"):
        load_image(np.zeros((1, 1, 3), np.uint8))
    bad = np.zeros((16, 16, 3), np.float32)
    bad[0, 0, 0] = math.nan
    with pytest.raises(ImageError, match="NaN"):
        load_image(bad)
    with pytest.raises(ImageError, match="expected \\[0, 1\\]"):
        load_image(np.full((16, 16, 3), -5.0, np.float32))


def test_a_symlink_loop_is_called_a_loop_not_missing(tmp_path):
    from hsets_widgets.model.images import ImageError
    from hsets_widgets.runs.datasets import collect_images

    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(ImageError, match="symbolic link loop"):
        load_image(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="symbolic link loop"):
        collect_images([tmp_path / "a.png"])
    with pytest.raises(ModelError, match="symbolic link loop"):
        load_checkpoint(nn.Linear(2, 2), tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="symbolic link loop"):
        Explanation.load(tmp_path / "a.png")
    (tmp_path / "c.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="broken symbolic link"):
        load_image(tmp_path / "c.png")


def test_a_panorama_says_that_only_its_centre_is_explained():
    with pytest.warns(UserWarning, match=r"centre \d+% of this 400x40 image"):
        resize_center_crop(np.zeros((40, 400, 3), np.float32), 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resize_center_crop(np.zeros((300, 400, 3), np.float32), 32)     # an ordinary photo: quiet


def test_every_listed_example_photo_loads():
    from hsets_widgets.model.images import EXAMPLES

    for name in EXAMPLES:
        a = load_image(name)
        assert a.ndim == 3 and a.shape[2] == 3 and min(a.shape[:2]) >= 224, name


def test_load_image_reads_bytes_as_it_reads_the_file(tmp_path):
    from hsets_widgets.model.images import ImageError, load_image, load_image_bytes

    gray = (np.tile(np.linspace(0, 1, 32), (32, 1)) * 65535).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = load_image_bytes((tmp_path / "g16.png").read_bytes())
        np.testing.assert_array_equal(a, load_image(tmp_path / "g16.png"))
    assert 0.45 < a.mean() < 0.55                          # not all white
    with pytest.raises(ImageError, match="cannot read notes.txt as an image"):
        load_image_bytes(b"hello", "notes.txt")


# ---- properties (hypothesis) --------------------------------------------------------------------
def expected_upright(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What every viewer shows for ``stored`` pixels with EXIF ``orientation`` (1..8)."""
    ops = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
           5: lambda a: np.rot90(np.fliplr(a), 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(np.fliplr(a), -1), 8: lambda a: np.rot90(a, 1)}
    return ops[orientation](stored)


@FILES
@given(st.integers(8, 24), st.integers(8, 24), st.integers(1, 8), st.integers(0, 2 ** 31 - 1))
def test_exif_orientation_gives_the_upright_photo(tmp_path, h, w, orientation, seed):
    stored = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "p.png", exif=exif)
    np.testing.assert_allclose(load_image(tmp_path / "p.png"), expected_upright(stored, orientation) / 255.0,
                               atol=1e-6)


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK", "YCbCr", "PA"]


@FILES
@given(st.sampled_from(MODES), st.sampled_from(["png", "tiff", "webp", "bmp", "jpeg", "gif"]),
       st.integers(1, 40), st.integers(1, 40), st.integers(0, 2 ** 31 - 1))
def test_any_mode_and_format_loads_in_range_or_is_refused(tmp_path, mode, fmt, h, w, seed):
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    im = rgb.convert(mode) if mode not in ("I;16",) else Image.fromarray(
        np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    path = tmp_path / f"p.{fmt}"
    try:
        im.save(path)
    except (OSError, ValueError, KeyError):
        assume(False)                                  # PIL cannot write this mode in this format
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            a = load_image(path)
        except ImageError as err:
            assert "too small" in str(err) and min(h, w) < 8, err
            return
    assert a.shape == (h, w, 3) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0


@FAST
@given(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, bool]),
       st.sampled_from(["hw", "hw1", "hw3", "hw4", "3hw", "1hw3"]), st.integers(1, 20), st.integers(1, 20),
       st.integers(0, 2 ** 31 - 1))
def test_any_array_loads_in_range_or_is_refused(dtype, layout, h, w, seed):
    rng = np.random.default_rng(seed)
    shape = {"hw": (h, w), "hw1": (h, w, 1), "hw3": (h, w, 3), "hw4": (h, w, 4), "3hw": (3, h, w),
             "1hw3": (1, h, w, 3)}[layout]
    if dtype is bool:
        arr = rng.random(shape) > 0.5
    elif np.issubdtype(dtype, np.integer):
        arr = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    else:
        arr = rng.random(shape).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            a = load_image(arr)
        except ImageError as err:
            assert "too small" in str(err) or "shape" in str(err), err
            return
    assert a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
