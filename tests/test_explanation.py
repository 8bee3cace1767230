"""Explanation files (hsets/explanation.py): a failed save keeps the earlier file and the result,
anything else or anything damaged is refused naming what is wrong; properties (hypothesis): any
explanation loads back equal, an edited member loads only if it lies in the image."""
import json

import numpy as np
import pytest
import torch
from conftest import FILES, tiny_classifier
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from hsets_widgets.hsets.explain import explain
from hsets_widgets.hsets.explanation import Explanation, InteractionSet, equal, first_difference
from hsets_widgets.hsets.growth import GrowthStep
from hsets_widgets.model.images import load_image, resize_center_crop
from hsets_widgets.plumbing.files import OutputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- saving -------------------------------------------------------------------------------------
def test_full_disk_leaves_no_corrupt_explanation_and_keeps_the_result(small32, photo48, tmp_path, monkeypatch):
    e = explain(photo48, small32, segmenter="slic", n_steps=8, nu=8, n_sets=1)
    good = e.save(tmp_path / "e.npz")
    before = good.read_bytes()

    def disk_full(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(OutputError, match=r"could not write .*e\.npz.*No space left"):
        e.save(tmp_path / "e.npz")
    monkeypatch.undo()
    assert good.read_bytes() == before                   # the earlier file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]   # no temporary file left
    assert Explanation.load(e.save(tmp_path / "again.npz")).target == e.target   # still in memory


# ---- loading something else, or something damaged -----------------------------------------------
@pytest.mark.parametrize("kind", ["corrupt", "plain-npz", "jpeg", "one-array"])
def test_loading_something_else_says_it_is_not_an_explanation(tmp_path, kind):
    path = tmp_path / f"x.{kind}"
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 this zip is cut short")
    elif kind == "plain-npz":
        np.savez(path, a=np.zeros(3))
        path = path.with_name(path.name + ".npz")
    elif kind == "jpeg":
        Image.new("RGB", (8, 8)).save(path, format="JPEG")
    else:
        np.save(path, np.zeros(3))
        path = path.with_name(path.name + ".npy")
    with pytest.raises(ValueError, match="not an H-Sets explanation file"):
        Explanation.load(path)


@pytest.fixture(scope="module")
def saved_explanation(tmp_path_factory):
    photo = resize_center_crop(load_image("chelsea"), 48)
    e = explain(photo, tiny_classifier(torch.float32, size=48, width=6), segmenter="slic", n_steps=4, nu=6,
                n_sets=1, n_samples=8)
    return e.save(tmp_path_factory.mktemp("expl") / "e.npz")


def rewrite(path, tmp_path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("change, says", [
    (lambda a: {"set0_members": a["set0_members"] - 10_000}, "members"),
    (lambda a: {"set0_members": a["set0_members"].astype(np.float64) + 0.5}, "members"),
    (lambda a: {"set0_members": a["set0_members"] + 48 * 48}, "members"),
    (lambda a: {"heatmap": np.zeros((10, 10), np.float32)}, "heatmap"),
    (lambda a: {"labels": np.zeros((48, 47), np.int32)}, "labels"),
    (lambda a: {"ig": np.zeros((3, 10, 10), np.float32)}, "ig"),
    (lambda a: {"set0_step_added": a["set0_step_added"] - 10_000}, "step"),
])
def test_explanation_files_with_impossible_contents_are_refused(saved_explanation, tmp_path, change, says):
    with np.load(saved_explanation) as z:
        arrays = {k: z[k] for k in z.files}
    bad = rewrite(saved_explanation, tmp_path, **change(arrays))
    with pytest.raises(ValueError, match=f"damaged H-Sets explanation file.*{says}"):
        Explanation.load(bad)
    assert Explanation.load(saved_explanation).sets[0].members.min() >= 0


def explanation_arrays(tmp_path):
    from hsets_widgets.hsets.explanation import Explanation, InteractionSet
    from hsets_widgets.hsets.growth import GrowthStep

    rng = np.random.default_rng(0)
    h = w = 8
    members = np.array([9, 10, 17, 18], np.int64)
    s = InteractionSet(seed=9, seed_yx=(1, 1), segment=0, members=members, value=1.0, stderr=0.0,
                       value_kind="mean", signed_score=0.0, log2_total=2.0, exact=True, n_samples=0,
                       steps=[GrowthStep(9, [10, 17, 18])], samples=np.zeros(0), banzhaf=np.zeros(4),
                       shares=np.zeros(4))
    e = Explanation(image=rng.random((h, w, 3)).astype(np.float32), target=3, class_name="c3", probability=0.5,
                    sets=[s], heatmap=rng.random((h, w)).astype(np.float32),
                    ig=rng.random((3, h, w)).astype(np.float32), labels=np.zeros((h, w), np.int32),
                    features="pixel", settings={"preset": "default"}, timings={}, info={})
    path = e.save(tmp_path / "e.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    return arrays, meta


def write_edited(tmp_path, arrays, meta):
    arrays = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    np.savez(tmp_path / "edited.npz", **arrays)
    return tmp_path / "edited.npz"


@pytest.mark.parametrize("edit, match", [
    (lambda a, m: m["sets"][0].update(seed_yx=[8, 1]), "seed pixel"),
    (lambda a, m: m["sets"][0].update(seed_yx=[-1, 1]), "seed pixel"),
    (lambda a, m: a.update(image=np.full((8, 8, 3), np.nan, np.float32)), "image holds"),
    (lambda a, m: a.update(labels=np.full((8, 8), np.nan)), "labels"),
    (lambda a, m: m.update(target=-3), "target"),
    (lambda a, m: m.update(probability=7.5), "probability"),
    (lambda a, m: a.update(set0_members=np.array([9, 9, 9, 9], np.int64)), "twice"),
    (lambda a, m: a.update(heatmap=np.full((8, 8), "x")), "heatmap holds"),
])
def test_explanation_load_refuses_damage_naming_the_field(tmp_path, edit, match):
    from hsets_widgets.hsets.explanation import Explanation

    arrays, meta = explanation_arrays(tmp_path)
    Explanation.load(write_edited(tmp_path, arrays, meta))        # the unedited file loads
    edit(arrays, meta)
    with pytest.raises(ValueError, match=match):
        Explanation.load(write_edited(tmp_path, arrays, meta))


def test_explanation_load_refuses_a_huge_declared_array_and_deep_json(tmp_path):
    import zipfile

    from hsets_widgets.hsets.explanation import Explanation

    arrays, meta = explanation_arrays(tmp_path)
    path = write_edited(tmp_path, {k: v for k, v in arrays.items() if k != "set0_members"}, meta)
    header = {"descr": "<i8", "fortran_order": False, "shape": (2 ** 40,)}     # a member of 8 TiB
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("set0_members.npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(ValueError, match="declares"):
        Explanation.load(path)
    deep = dict(arrays, meta=np.frombuffer(b"[" * 100000 + b"]" * 100000, np.uint8))
    np.savez(tmp_path / "deep.npz", **deep)
    with pytest.raises(ValueError, match="not an H-Sets explanation file"):
        Explanation.load(tmp_path / "deep.npz")


# ---- properties (hypothesis) --------------------------------------------------------------------
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
