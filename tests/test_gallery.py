"""The gallery over a real ``hsets evaluate`` folder: reading it (never writing), damage and
failures as notes, sort / filter / brush, two runs paired, a run that is still writing, a
photo opened in the Explorer and back, and the static views GitHub shows."""
from __future__ import annotations

import html
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_classifier

from hsets_widgets import collect_images, run_evaluation
from hsets_widgets.runs.records import RunRecords, open_run
from hsets_widgets.runs.store import load_maps
from hsets_widgets.widgets.gallery import Gallery

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: scikit-image photos, named by their ImageNet class so the run knows their labels
PHOTOS = {"n02123045_chelsea": "chelsea", "n03063599_coffee": "coffee", "n04266014_rocket": "rocket",
          "n03792782_motorcycle": "motorcycle_left"}
METHODS = ["gradient", "random", "ig:n_steps=8"]


def model():
    return tiny_classifier(torch.float32, size=32, width=4)


def make_run(root: Path, seed: int = 0) -> Path:
    """A real run: run_evaluation (what `hsets evaluate` calls) on four photos, cheap methods."""
    from PIL import Image

    from hsets_widgets.model.images import load_image

    photos = root / "photos"
    if not photos.exists():
        photos.mkdir(parents=True)
        for stem, name in PHOTOS.items():
            Image.fromarray((load_image(name) * 255).astype(np.uint8)).save(photos / f"{stem}.png")
    out = root / f"eval{seed}"
    run_evaluation(collect_images([photos]), model(), out, methods=METHODS, percentages=[0.2, 0.5],
                   seed=seed)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    return make_run(root, 0), make_run(root, 1)


@pytest.fixture
def run_copy(runs, tmp_path):
    """A copy of the first run to damage or cut."""
    return Path(shutil.copytree(runs[0], tmp_path / "eval"))


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def gallery(folder, **kw):
    return Gallery(folder, model=model(), explorer_settings={"segmenter": "slic", "background": False,
                                                             "readout": False}, **kw)


def test_the_reader_gives_every_recorded_number_and_the_stored_maps(runs):
    run = RunRecords(runs[0])
    assert run.notes == []
    assert len(run.keys) == 4 and run.methods == METHODS
    cols = run.columns()
    for m in METHODS:
        for metric in ("morf_aopc", "lerf_aopc", "insertion_auc", "deletion_auc", "sparsity", "support"):
            assert np.isfinite(cols[f"{m} {metric}"]).all()
    assert set(np.unique(cols["correct"])) <= {0.0, 1.0} and "probability" in cols
    key = run.keys[0]
    rec = run.records[key]
    stored = load_maps(runs[0] / "maps" / f"{rec.slug}.npz", METHODS)
    maps = run.maps(key)
    assert set(maps) == set(METHODS)
    assert np.array_equal(maps["random"], np.asarray(stored["random"], np.float64))
    # the summary is metrics.json's, with a 95% interval around its mean
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    s = run.summary()["gradient"]["morf_aopc"]
    assert s["source"] == "metrics.json" and s["n"] == 4
    assert s["mean"] == pytest.approx(metrics["methods"]["gradient"]["morf_aopc"]["mean"])
    assert s["low"] <= s["mean"] <= s["high"]


def test_the_gallery_never_writes_into_the_folder(runs):
    before = snapshot(runs[0])
    g = gallery(runs[0])
    g.grid.wait()
    g.state.sort_by = "random morf_aopc"
    g.state.method = "ig:n_steps=8"
    g.grid.wait()
    g.poll()
    g.open_photo(g.state.shown()[0])
    g.close_photo()
    g.close()
    assert snapshot(runs[0]) == before


def test_sort_filter_and_the_scatter_brush_select_in_the_grid(runs):
    g = gallery(runs[0])
    st, run = g.state, g.run
    col = run.columns()["gradient morf_aopc"]
    g.sort.value = "gradient morf_aopc"
    g.order.value = False                               # low first
    expect = [run.keys[i] for i in np.argsort(col, kind="stable")]
    assert st.shown() == expect
    assert g.grid.tile_keys[:4] == expect
    assert "gradient morf_aopc" in g.grid.labels[0].value
    # a range filter keeps the photos inside it; a word that is no number is refused in words
    g.filter_by.value = "gradient morf_aopc"
    g.low.value = str(float(np.sort(col)[1]))
    assert st.shown() == expect[1:]
    g.high.value = "abc"
    assert "not a number" in g.filter_error.value and st.shown() == expect[1:]
    g.low.value = ""
    g.high.value = ""
    # the brush: the front end sets the scatter's selected points; the grid shows those photos
    g.scatter.xpick.value = "gradient sparsity"
    g.scatter.ypick.value = "ig:n_steps=8 morf_aopc"
    assert list(g.scatter.mark.x) == list(run.columns()["gradient sparsity"])
    g.scatter.mark.selected = [0, 2]
    assert set(st.selection) == {run.keys[0], run.keys[2]}
    assert set(g.grid.tile_keys[:2]) == {run.keys[0], run.keys[2]} and g.grid.tile_keys[2] is None
    assert "2 selected" in g.grid.where.value and "2 photo(s) selected" in g.scatter.info.value
    g.scatter.clear.click()
    assert st.selection == [] and len(st.shown()) == 4 and g.scatter.mark.selected is None
    g.close()


def test_thumbnails_show_the_chosen_methods_map(runs):
    from PIL import Image

    g = gallery(runs[0])
    g.grid.wait()
    first = g.grid.images[0].value
    assert Image.open(io.BytesIO(first)).size == (112, 112)
    g.method.value = ""                                  # the photo alone
    g.grid.wait()
    assert g.grid.images[0].value != first and g.grid.images[0].value != g.grid.blank
    g.close()


def test_damaged_failed_and_old_records_open_with_notes(run_copy):
    run0 = RunRecords(run_copy)
    keys = run0.keys
    lines = (run_copy / "results.jsonl").read_text().splitlines()
    old = json.loads(lines[1])
    old.pop("probability")                                # a record of an older version
    failed = {"key": "/photos/gone.png", "path": "/photos/gone.png", "slug": "gone", "status": "failed",
              "reason": "worker died 3 times", "attempts": 3}
    with open(run_copy / "results.jsonl", "w") as fh:
        fh.write("\n".join([lines[0], json.dumps(old), "{not json", json.dumps({"key": 3}),
                            json.dumps(failed), lines[2], lines[3]]) + "\n")
        fh.write(lines[3][:40])                          # a torn last line
    (run_copy / "maps" / f"{run0.records[keys[2]].slug}.npz").unlink()
    (run_copy / "metrics.json").write_text("{truncated")
    before = snapshot(run_copy)
    g = gallery(run_copy)
    notes = g.notes.value
    for words in ("line 3 skipped", "not JSON", "line 4 skipped", "1 photo(s) failed", "worker died 3 times",
                  "unfinished", "lack the class probability", "no maps file", "metrics.json cannot be read"):
        assert words in notes, words
    # the failed photo is listed with its reason; the done ones sort and show as usual
    g.show.value = "failed"
    assert g.state.shown() == ["/photos/gone.png"] and "worker died" in g.grid.labels[0].value
    g.show.value = "done"
    assert len(g.state.shown()) == 4
    g.grid.wait()
    # the photo without maps shows the photo alone; opening the failed one says why, the grid stays
    g.open_photo("/photos/gone.png")
    assert "failed in this run" in g.open_error.value and g.children == (g.main,)
    # the summary falls back on the records (bootstrap) with metrics.json unreadable
    assert "from the records" in g.summary.value
    g.close()
    assert snapshot(run_copy) == before


def test_records_a_running_evaluation_appends_appear(run_copy):
    path = run_copy / "results.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0])
    (run_copy / "metrics.json").unlink()                # a run still under way has none yet
    g = gallery(run_copy)
    assert len(g.state.shown()) == 1 and len(g.scatter.point_keys) == 1
    assert "not written yet" in g.notes.value
    assert g.ticker.playing and g.ticker.interval == 2000   # the page polls; no kernel thread
    with open(path, "ab") as fh:
        fh.write(lines[1] + lines[2][:30])              # one whole record and one being written
    assert len(g.poll()) == 1
    assert len(g.state.shown()) == 2 and len(g.scatter.point_keys) == 2 and "unfinished" in g.notes.value
    with open(path, "ab") as fh:
        fh.write(lines[2][30:40])                        # still unfinished: no record, the note stays
    assert g.poll() == [] and len(g.state.shown()) == 2 and "unfinished (40 bytes)" in g.notes.value
    with open(path, "ab") as fh:
        fh.write(lines[2][40:] + lines[3])
    g.ticker.value += 1                                  # what the page's timer does
    assert len(g.state.shown()) == 4 and "unfinished" not in g.notes.value
    assert "photos 1-4 of 4" in g.grid.where.value
    g.close()


def test_two_runs_are_paired_photo_by_photo(runs):
    g = gallery(runs[0], compare=runs[1])
    a, b = RunRecords(runs[0]), RunRecords(runs[1])
    cols = g.run.columns()
    name = "random morf_aopc"
    assert np.allclose(cols[f"B - A: {name}"], b.columns()[name] - a.columns()[name])
    assert g.state.sort_by.startswith("B - A: ")
    assert "B - A [95% interval]" in g.summary.value and "random" in g.summary.value
    g.grid.wait()
    from PIL import Image

    assert Image.open(io.BytesIO(g.grid.images[0].value)).size == (224, 112)   # both runs' maps
    g.close()


def test_a_click_opens_the_explorer_with_the_stored_maps_and_back_keeps_the_grid(runs):
    g = gallery(runs[0])
    g.sort.value = "random sparsity"
    g.scatter.mark.selected = [1, 3]
    shown = g.state.shown()
    key = g.grid.tile_keys[0]
    g.grid.buttons[0].click()                            # 'open' under the first thumbnail
    ex = g.explorer
    assert g.children[1] is ex and ex.explainer.target == g.run.records[key].target
    stored = RunRecords(runs[0]).maps(key)
    assert np.array_equal(ex.state.method_cache["random"].map, stored["random"])
    assert np.array_equal(ex.state.method_cache["gradient"].map, stored["gradient"])
    assert np.array_equal(ex.state.method_cache["ig"].map, stored["ig:n_steps=8"])   # keyed by its name
    assert g.layers == {"gradient": "gradient", "random": "random", "ig": "ig:n_steps=8"}
    assert "ig (ig:n_steps=8)" in g.children[0].children[1].value
    assert ex.state.method == "gradient" and ex.state.method_result is ex.state.method_cache["gradient"]
    g.back.click()
    assert g.children == (g.main,) and g.state.shown() == shown and g.state.sort_by == "random sparsity"
    assert len(g.state.selection) == 2
    g.close()


def test_the_run_model_is_named_in_the_error_when_it_cannot_be_loaded(runs):
    g = Gallery(runs[0])                                 # the run's model is the tiny test network
    g.open_photo(g.run.keys[0])
    said = html.unescape(g.open_error.value)
    assert "model 'tiny' cannot be loaded by name" in said
    assert "Gallery(folder, model=...)" in said and g.children == (g.main,)
    g.close()


def test_static_views_for_github_and_nbviewer(runs):
    g = gallery(runs[0])
    bundle = g._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    static = bundle["text/html"]
    assert "H-Sets gallery" in static and "n02123045_chelsea.png" in static and "MoRF AOPC" in static
    g.close()


def test_a_folder_that_is_no_run_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="holds no results.jsonl or config.json; give the --out folder"):
        open_run(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        Gallery(tmp_path / "missing")


def test_hsets_explore_takes_a_run_folder(runs, tmp_path, capsys):
    import argparse

    from hsets_widgets.cli.explore import app_environment
    from hsets_widgets.cli.main import main
    from hsets_widgets.widgets.app import explorer_from_env

    args = argparse.Namespace(image=str(runs[0]), compare=str(runs[1]), preset="default", segmenter="slic",
                              model=None, settings=[])
    env = app_environment(args, base={})
    assert env["HSETS_GALLERY"] == str(runs[0].resolve()) and env["HSETS_COMPARE"] == str(runs[1].resolve())
    g = explorer_from_env(env)
    assert isinstance(g, Gallery) and len(g.run.keys) == 4 and g.state.paired
    g.close()
    assert main(["explore", str(tmp_path), "--no-browser"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hsets explore: error:") and "give the --out folder of `hsets evaluate`" in err
    assert len(err.splitlines()) == 1


def test_an_explanation_shows_a_picture_and_a_table_without_widgets(photo48, small32):
    from PIL import Image

    from hsets_widgets import explain

    e = explain(photo48, small32, segmenter="slic", n_steps=8, nu=20, n_sets=2)
    png = Image.open(io.BytesIO(e._repr_png_()))
    assert png.size == (2 * 240, 240)                    # photo and heatmap, 48 px upscaled 5x
    rgb = np.asarray(png.convert("RGB"), np.int64)
    assert np.abs(rgb[:, :240] - rgb[:, 240:]).sum(-1).max() > 100   # the heatmap marks pixels
    page = e._repr_html_()
    assert "data:image/png;base64," in page and page.count("<tr>") == 1 + len(e.sets)
    assert f"p = {e.probability:.2f}" in page and e.class_name in page


def test_a_run_in_progress_shows_its_records_as_they_arrive(runs, tmp_path):
    """A real run_evaluation in a thread, held after its first photo: the gallery opens on the
    locked folder beside it, then shows the other photos once they are written."""
    import threading

    first_done, go_on = threading.Event(), threading.Event()

    def progress(stage, done, total):
        if stage == "evaluate" and done == 1:
            first_done.set()
            go_on.wait(60)

    out = tmp_path / "running"
    items = collect_images([runs[0].parent / "photos"])
    worker = threading.Thread(target=run_evaluation, args=(items, model(), out),
                              kwargs=dict(methods=["random"], percentages=[0.5], curves=(), progress=progress))
    worker.start()
    try:
        assert first_done.wait(120)
        g = gallery(out)
        assert len(g.state.shown()) == 1 and "not written yet" in g.notes.value
    finally:
        go_on.set()
        worker.join(120)
    assert g.poll() and len(g.state.shown()) == 4 and "photos 1-4 of 4" in g.grid.where.value
    g.close()


def test_closing_the_gallery_ends_its_thread(runs):
    g = gallery(runs[0])
    g.method.value = "random"                        # thumbnails to draw: the worker starts
    worker = g.grid.runner._thread                   # noqa: SLF001 - the thread under test
    assert worker is not None and worker.is_alive()
    g.close()
    assert not worker.is_alive()                     # gone now, not after the worker's idle wait


@pytest.mark.parametrize("seed", range(5))
def test_reading_in_pieces_gives_what_reading_it_whole_gives(run_copy, seed):
    """However the run's appends fall (mid-line, several lines at once), looking after each
    gives the records of the whole file, and a line is never read before it is whole."""
    path = run_copy / "results.jsonl"
    data = path.read_bytes()
    whole = RunRecords(run_copy)
    cuts = sorted(np.random.default_rng(seed).choice(np.arange(1, len(data)), 6, replace=False).tolist())
    path.write_bytes(b"")
    run = RunRecords(run_copy)
    for a, b in zip([0] + cuts, cuts + [len(data)]):
        with open(path, "ab") as fh:
            fh.write(data[a:b])
        run.refresh()
        assert len(run.records) == data[:b].count(b"\n")        # whole lines only
        assert run.bad_lines == []
    assert {k: r.numbers for k, r in run.records.items()} == {k: r.numbers for k, r in whole.records.items()}
    assert run.keys == whole.keys and run.notes == whole.notes
