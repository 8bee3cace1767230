"""An evaluation stores the sets of the methods that make sets beside their maps, keeps them when
it resumes, and the gallery's Explorer shows them without computing anything again."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_classifier

from hsets_widgets import attribute_sets, collect_images, run_evaluation
from hsets_widgets.runs.records import RunRecords
from hsets_widgets.runs.runner import read_item
from hsets_widgets.runs.store import SET_ARRAYS, map_key
from hsets_widgets.widgets.gallery import Gallery

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOXI = "moxi:grid=4,max_steps=6"


def model():
    return tiny_classifier(torch.float32, size=32, width=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from PIL import Image

    from hsets_widgets.model.images import load_image

    root = tmp_path_factory.mktemp("sets")
    (root / "photos").mkdir()
    for stem, name in (("n02123045_chelsea", "chelsea"), ("n03063599_coffee", "coffee")):
        Image.fromarray((load_image(name) * 255).astype(np.uint8)).save(root / "photos" / f"{stem}.png")
    items = collect_images([root / "photos"])
    run_evaluation(items, model(), root / "eval", methods=["random", MOXI], percentages=[0.5], curves=[])
    return root / "eval", items


def same_sets(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(s.pixels, t.pixels) and tuple(s.seed_yx) == tuple(t.seed_yx)
                                    and s.value == t.value for s, t in zip(a, b))


def test_the_sets_a_method_made_are_stored_and_read_back_exactly(run):
    out, items = run
    records = RunRecords(out)
    clf = model()
    for item in items:
        key = item.key
        stored = records.sets(key)
        assert set(stored) == {MOXI}                     # a method without sets stores none
        made = attribute_sets(read_item(item, clf), clf, records.records[key].target, method=MOXI)
        assert made.sets and same_sets(stored[MOXI], made.sets)
        with np.load(out / "maps" / f"{records.records[key].slug}.npz") as z:
            assert {map_key(f"{MOXI} {part}") for part in SET_ARRAYS} <= set(z.files)
            assert map_key("random set_pixels") not in z.files


def test_a_resumed_run_keeps_the_stored_sets(run, tmp_path):
    import shutil

    out, items = run
    copy = shutil.copytree(out, tmp_path / "eval")
    before = {i.key: RunRecords(copy).sets(i.key) for i in items}
    run_evaluation(items, model(), copy, methods=["random", MOXI, "gradient"], percentages=[0.5], curves=[])
    records = RunRecords(copy)
    for item in items:
        assert "gradient" in records.maps(item.key)
        assert same_sets(records.sets(item.key)[MOXI], before[item.key][MOXI])


def test_the_gallery_explorer_shows_the_stored_sets_without_computing_them(run, monkeypatch):
    out, items = run
    key = items[0].key
    calls = []
    monkeypatch.setattr("hsets_widgets.widgets.state.attribute_sets", lambda *a, **k: calls.append(a))
    g = Gallery(out, model=model(), explorer_settings={"segmenter": "slic", "background": False, "readout": False})
    try:
        ex = g.make_explorer(key)
        ex.state.show_method("moxi")
        assert calls == []
        assert same_sets(ex.state.method_result.sets, RunRecords(out).sets(key)[MOXI])
    finally:
        g.close()
