"""Property-based tests (hypothesis) of the three places a user's text, files and arrays come in:
the settings grammar, the image loader and the explanation file format. Each property is what
a user relies on: a value is read as written or refused with its name, an image comes out as
(H, W, 3) in [0, 1] seen the right way up or is refused with an ImageError, and an explanation
file loads back equal or is refused, never read with members outside the image."""
import argparse
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from hsets_widgets.hsets.explanation import Explanation, InteractionSet, equal, first_difference
from hsets_widgets.hsets.growth import GrowthStep
from hsets_widgets.hsets.presets import HSetsConfig, get_config
from hsets_widgets.model.images import ImageError, load_image
from hsets_widgets.plumbing.options import NUMBERS, parse_assignments, parse_value, whole_number

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---- the settings grammar --------------------------------------------------------------------
@FAST
@given(st.integers(-10 ** 18, 10 ** 18))
def test_whole_numbers_read_back_as_written(n):
    assert parse_value(str(n)) == n and isinstance(parse_value(str(n)), int)
    assert whole_number(f"{n:e}") == int(float(f"{n:e}")) if abs(n) < 2 ** 53 else True


@FAST
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_real_numbers_read_back_as_written(x):
    value = parse_value(repr(x))
    assert value == x and not isinstance(value, bool)


@FAST
@given(st.sampled_from(sorted(NUMBERS)), st.one_of(st.integers(-10 ** 6, 10 ** 6), st.floats(-1e6, 1e6),
                                                   st.sampled_from(["nan", "inf", "-inf", "x", "", "1e9", "0x10"])))
def test_number_options_agree_between_the_cli_and_python(name, value):
    """A value the command line accepts is one Python accepts, and each refusal names the option."""
    rule = NUMBERS[name]
    try:
        from_text = rule(str(value))
    except argparse.ArgumentTypeError as err:
        from_text, text_error = None, str(err)
        assert text_error.startswith("need ")
    if isinstance(value, str):
        return
    try:
        checked = rule.check(value)
    except ValueError as err:
        assert str(err).startswith(f"{name} must be ")
        assert from_text is None
    else:
        assert from_text == checked


FIELDS = sorted(f for f in HSetsConfig.__dataclass_fields__ if f not in ("preset",))
TEXT_VALUES = st.one_of(st.integers(-5, 3000).map(str), st.floats(-10, 10).map(repr),
                        st.sampled_from(["true", "false", "none", "nan", "inf", "1e9", "1e-3", "'dfs'", "bfs",
                                         "topk", "pixel", "channel", "auto", "mean", "", "-0"]))


@FAST
@given(st.dictionaries(st.sampled_from(FIELDS), TEXT_VALUES, max_size=4))
def test_any_text_settings_give_a_config_or_name_the_field(assignments):
    """``--set KEY=VALUE`` for any known key and any value: a valid config, or a ValueError that
    names the field; never another exception, never a config holding a value it refuses."""
    overrides = parse_assignments(f"{k}={v}" for k, v in assignments.items())
    try:
        cfg = get_config("default", **overrides)
    except ValueError as err:
        assert any(f"{k}=" in str(err) for k in overrides), str(err)
        return
    for k, v in overrides.items():
        got = getattr(cfg, k)
        assert got == v or (isinstance(v, float) and math.isnan(v) and math.isnan(got)) or k == "n_sets", (k, v, got)


# ---- the image loader ------------------------------------------------------------------------
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


# ---- the explanation file format -------------------------------------------------------------
@st.composite
def explanations(draw):
    h, w = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    features = draw(st.sampled_from(["pixel", "channel"]))
    n = h * w * (3 if features == "channel" else 1)
    sets = []
    for _ in range(draw(st.integers(0, 3))):
        members = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=min(n, 10), unique=True))
        steps = [GrowthStep(members[0], members[1:])]
        sets.append(InteractionSet(seed=members[0], seed_yx=(0, 0), segment=draw(st.integers(0, 5)),
                                   members=np.asarray(members, np.int64),
                                   value=draw(st.floats(allow_nan=True, allow_infinity=False)),
                                   stderr=0.0, value_kind="mean", signed_score=0.0, log2_total=float(len(members)),
                                   exact=draw(st.booleans()), n_samples=draw(st.integers(0, 100)), steps=steps,
                                   samples=np.asarray(draw(st.lists(st.floats(-1e6, 1e6), max_size=5)), np.float64),
                                   banzhaf=np.zeros(len(members)), shares=np.zeros(len(members))))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31 - 1)))
    return Explanation(image=rng.random((h, w, 3)).astype(np.float32), target=draw(st.integers(0, 999)),
                       class_name=draw(st.text(max_size=12)), probability=draw(st.floats(0, 1)), sets=sets,
                       heatmap=rng.random((h, w)).astype(np.float32), ig=rng.random((3, h, w)).astype(np.float32),
                       labels=rng.integers(0, 5, (h, w)).astype(np.int32), features=features,
                       settings={"preset": "default"}, timings={}, info={})


@FILES
@given(explanations())
def test_any_explanation_saves_and_loads_back_equal(tmp_path, e):
    path = e.save(tmp_path / "e.npz")
    back = Explanation.load(path)
    assert equal(e, back), first_difference(e, back)


@FILES
@given(explanations(), st.integers(-10 ** 6, 10 ** 6), st.sampled_from(["members", "step_added", "step_rows"]))
def test_an_edited_member_loads_only_if_it_is_in_the_image(tmp_path, e, bad, where):
    assume(e.sets)
    path = e.save(tmp_path / "e.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    key = f"set0_{where}"
    assume(arrays[key].size)
    arrays[key] = arrays[key].copy()
    arrays[key][-1] = bad
    np.savez(tmp_path / "edited.npz", **arrays)
    n = e.image.shape[0] * e.image.shape[1] * (3 if e.features == "channel" else 1)
    twice = where == "members" and bad in arrays[key][:-1]      # a member listed twice is damage too
    if 0 <= bad < n and not twice:
        back = Explanation.load(tmp_path / "edited.npz")
        assert back.sets[0].members.max() < n
    else:
        with pytest.raises(ValueError, match="damaged H-Sets explanation file"):
            Explanation.load(tmp_path / "edited.npz")


# ---- what is written -------------------------------------------------------------------------
JSON_LIKE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-2 ** 63, 2 ** 63 - 1))),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


@FAST
@given(JSON_LIKE)
def test_written_json_is_always_strict(obj):
    import json

    from hsets_widgets.plumbing.files import dumps

    json.loads(dumps(obj), parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))


NAMES = st.sampled_from(["a.png", "b.json", "c.npz", "d.csv"])


@FILES
@given(st.dictionaries(NAMES, st.binary(max_size=8), max_size=4),
       st.dictionaries(NAMES, st.binary(max_size=8), max_size=4), st.booleans())
def test_a_staged_folder_is_all_new_or_all_old(tmp_path, old, new, fail):
    import shutil

    from hsets_widgets.plumbing.files import staged_outputs

    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    if old:
        out.mkdir()
        for name, data in old.items():
            (out / name).write_bytes(data)
    try:
        with staged_outputs(out) as stage:
            for name, data in new.items():
                (stage / name).write_bytes(data)
            if fail:
                raise RuntimeError("the run failed before its last file")
    except RuntimeError:
        pass
    expected = old if fail else {**old, **new}
    found = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    assert found == expected
