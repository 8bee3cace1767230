"""``hsets evaluate`` and :func:`run_evaluation`: resume, bad files, labels, outputs."""
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import imagenet_tiny, save_photos, tiny_classifier
from PIL import Image
from torch import nn

from hsets_widgets import AttributionShapeError, collect_images, label_from_path, run_evaluation
from hsets_widgets.cli.main import main
from hsets_widgets.model.models import wrap_module
from hsets_widgets.runs.datasets import ImageItem, imagenet_wnids, imagenette_items
from hsets_widgets.runs.store import read_results

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def photo_dir(tmp_path):
    d = tmp_path / "photos"
    (d / "n01443537").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("n01440764_tench.png", "n03028079_church.jpg"):
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(d / name)
    Image.fromarray((rng.random((28, 28, 3)) * 255).astype(np.uint8)).save(d / "n01443537" / "fish.png")
    (d / "zz_broken.JPEG").write_bytes(b"this is not a jpeg")
    (d / "notes.txt").write_text("not an image, ignored when scanning folders")
    return d


def test_wnid_file_and_labels(photo_dir):
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and wnids[0] == "n01440764"
    assert label_from_path("x/n03888257_parachute.JPEG") == 701
    assert label_from_path("val/n01443537/img.png") == 1
    assert label_from_path("val/7/img.png") == 7
    assert label_from_path("val/Golden_Retriever/a.png", ["tench", "golden retriever"]) == 1
    assert label_from_path("misc/photo.png") is None
    items = collect_images([photo_dir])
    assert [i.path.name for i in items] == ["n01440764_tench.png", "fish.png",
                                            "n03028079_church.jpg", "zz_broken.JPEG"]
    assert [i.label for i in items] == [0, 1, 497, None]
    with pytest.raises(FileNotFoundError):
        collect_images([photo_dir / "missing"])


def counting_method():
    calls = []

    def center(x, classifier, target):
        calls.append(tuple(x.shape))
        h, w = x.shape[-2:]
        yy, xx = np.mgrid[:h, :w]
        return -((yy - h / 2) ** 2 + (xx - w / 2) ** 2).astype(float)

    return center, calls


def test_resume_skips_done_images_and_bad_files_are_counted(photo_dir, tmp_path):
    clf = imagenet_tiny()
    items = collect_images([photo_dir])
    out = tmp_path / "eval"
    center, calls = counting_method()
    kw = dict(methods=[center, "random", "gradient"], percentages=[0.2, 0.5])
    m1 = run_evaluation(items, clf, out, limit=1, **kw)
    assert len(calls) == 1 and m1["n_computed"] == 1 and m1["n_images"] == 1
    first = read_results(out / "results.jsonl")
    assert len(first) == 1
    with pytest.warns(UserWarning, match="skipping .*zz_broken"):
        m2 = run_evaluation(items, clf, out, **kw)
    assert len(calls) == 3                      # the done image was not explained again
    assert m2["n_resumed"] == 1 and m2["n_computed"] == 2 and m2["n_images"] == 3
    assert m2["n_skipped"] == 1 and "zz_broken" in m2["skipped"][0]["path"]
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    key = next(iter(first))
    assert sum(json.loads(line)["key"] == key for line in lines) == 1
    # a third run computes nothing
    with pytest.warns(UserWarning):
        m3 = run_evaluation(items, clf, out, **kw)
    assert len(calls) == 3 and m3["n_resumed"] == 3 and m3["n_computed"] == 0
    # outputs
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("center", "random", "gradient"):
        e = metrics["methods"][name]
        assert e["sparsity"]["n"] == 3 and 0 <= e["sparsity"]["mean"] <= 1
        assert e["curves"]["morf"]["percentages"] == [0.2, 0.5]
        assert e["sparsity_matched"]["n"] == 3 and e["sparsity_within"]["n"] == 3
    assert len(list((out / "images").glob("*.csv"))) == 3
    header = next(iter((out / "images").glob("*.csv"))).read_text().splitlines()[0]
    assert "morf_accuracy@0.2" in header and "sparsity_matched" in header
    assert "morf_aopc" in header and "insertion_auc" in header and "deletion_probability@1" in header
    # AOPC and insertion / deletion are metrics of the run, with their own plots
    rec = read_results(out / "results.jsonl")[key]["methods"]["center"]
    morf = rec["morf"]
    assert rec["morf_aopc"] == pytest.approx(np.mean(np.asarray(morf["probability"]) * -1 + morf["original_probability"]))
    assert rec["insertion"]["fractions"] == [0.0, 0.2, 0.5, 1.0] and 0 <= rec["deletion_auc"] <= 1
    for name in ("center", "random"):
        for k in ("morf_aopc", "lerf_aopc", "insertion_auc", "deletion_auc"):
            assert metrics["methods"][name][k]["n"] == 3
    assert (out / "insertion.png").exists() and (out / "deletion.png").exists()
    assert (out / "road_morf.png").stat().st_size > 1000 and (out / "road_lerf.png").exists()
    # other ROAD settings in the same folder are refused
    with pytest.raises(ValueError, match="other settings"):
        run_evaluation(items, clf, out, methods=["random"], percentages=[0.3])


def test_methods_added_on_a_rerun_are_computed_only_for_them(photo_dir, tmp_path):
    clf = imagenet_tiny()
    items = collect_images([photo_dir])[:2]
    out = tmp_path / "eval"
    center, calls = counting_method()
    run_evaluation(items, clf, out, methods=["random"], percentages=[0.3])
    m = run_evaluation(items, clf, out, methods=["random", center], percentages=[0.3])
    assert len(calls) == 2 and m["n_computed"] == 2
    rec = next(iter(read_results(out / "results.jsonl").values()))
    assert set(rec["methods"]) == {"random", "center"}
    # matched support recomputed from the stored maps of both methods
    assert rec["methods"]["random"]["matched_support"] == rec["methods"]["center"]["matched_support"]


def test_wrong_shape_method_fails_clearly_with_the_image(photo_dir, tmp_path):
    clf = imagenet_tiny()
    items = collect_images([photo_dir])[:1]
    with pytest.raises(AttributionShapeError, match=r"tench\.png.*shape \(7, 7\)"):
        run_evaluation(items, clf, tmp_path / "e", methods=[lambda x, c, t: np.zeros((7, 7))],
                       percentages=[0.3])


def test_cli_evaluate_resumes(photo_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["evaluate", str(photo_dir / "n01440764_tench.png"), str(photo_dir / "n03028079_church.jpg"),
            "--methods", "gradient,random", "--percentages", "10", "50", "--orders", "morf",
            "--out", str(out), "--no-progress"]
    assert main(args + ["--limit", "1"]) == 0
    m1 = json.loads((out / "metrics.json").read_text())
    assert m1["n_computed"] == 1 and m1["percentages"] == [0.1, 0.5] and m1["orders"] == ["morf"]
    assert main(args) == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["n_resumed"] == 1 and m2["n_computed"] == 1 and m2["n_images"] == 2
    assert m2["model"] == "efficientnet_lite0"
    printed = capsys.readouterr().out
    assert "| gradient |" in printed and "+-" in printed


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing_here"), "--out", str(tmp_path / "o")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_imagenette_offline_gives_a_clear_error(tmp_path, monkeypatch):
    from torchvision.datasets import Imagenette

    # point the archive at a closed local port: fails fast online or offline
    monkeypatch.setattr(Imagenette, "_ARCHIVES",
                        {"320px": ("http://127.0.0.1:9/imagenette2-320.tgz", "0" * 32)})
    with pytest.raises(RuntimeError, match=r"could not get Imagenette.*Offline\?"):
        imagenette_items(tmp_path / "data")


def test_ig_and_hsets_baselines_come_from_the_engine(photo_dir, tmp_path):
    from hsets_widgets import attribute
    from hsets_widgets.runs.datasets import load_item

    clf = imagenet_tiny()
    x = load_item(collect_images([photo_dir])[0], 24)
    ig = attribute(x, clf, method="ig:n_steps=8")
    assert ig.shape == (3, 24, 24) and np.abs(ig).sum() > 0
    spec = "hsets:default+n_sets=2+nu=12+max_rows=6+n_samples=50+segmenter=slic".replace("+", ",")
    h = attribute(x, clf, method=spec)
    assert h.shape == (24, 24)
    assert 0 < (h != 0).sum() <= 24          # two sets of at most 12 pixels
    np.testing.assert_array_equal(h, attribute(x, clf, method=spec))  # seeded
    m = run_evaluation(collect_images([photo_dir])[:1], clf, tmp_path / "e", methods=[spec, "ig:n_steps=8"],
                       percentages=[0.1, 0.3])
    hs = m["methods"][spec]
    assert hs["support"]["mean"] <= 24 and hs["sparsity"]["mean"] > 0.9
    # at matched support the dense IG map is cut to the same number of pixels
    assert m["methods"]["ig:n_steps=8"]["matched_support"]["mean"] == hs["support"]["mean"]


def test_progress_is_a_callable_everywhere(tmp_path):
    from hsets_widgets.runs.runner import run_evaluation

    clf = imagenet_tiny()
    with pytest.raises(TypeError, match=r"progress\(stage, done, total\)"):
        run_evaluation([], clf, tmp_path / "out", methods=["random"], progress=True)


def test_correct_only_skips_misclassified_and_unlabelled_images(tmp_path, capsys):
    from hsets_widgets.runs.datasets import imagenet_wnids, load_item

    clf = imagenet_tiny()
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(1)
    img = (rng.random((30, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(d / "probe.png")
    target = int(clf(load_item(collect_images([d])[0], 24).unsqueeze(0)).argmax())
    wnids = imagenet_wnids()
    (d / "probe.png").rename(d / f"{wnids[target]}_right.png")        # labelled as predicted
    Image.fromarray(img).save(d / f"{wnids[(target + 1) % 1000]}_wrong.png")
    Image.fromarray(img).save(d / "unlabelled.png")
    items = collect_images([d])
    m = run_evaluation(items, clf, tmp_path / "e", methods=["random"], percentages=[0.3], correct_only=True)
    assert m["n_images"] == 1 and m["n_skipped"] == 2
    reasons = {Path(s["path"]).name: s["reason"] for s in m["skipped"]}
    assert reasons[f"{wnids[(target + 1) % 1000]}_wrong.png"] == (
        f"misclassified: predicted {target}, label {(target + 1) % 1000} (--correct-only)")
    assert "no label" in reasons["unlabelled.png"]
    # the folder remembers the protocol: a rerun without the flag is refused, with the flag resumes
    with pytest.raises(ValueError, match="other settings.*correct_only"):
        run_evaluation(items, clf, tmp_path / "e", methods=["random"], percentages=[0.3])
    assert run_evaluation(items, clf, tmp_path / "e", methods=["random"], percentages=[0.3],
                          correct_only=True)["n_resumed"] == 1


def test_more_moved_controls_let_a_run_reach_small_p_values_and_the_folder_remembers(tmp_path, photo48, small32):
    from hsets_widgets import attribute_sets
    from hsets_widgets.metrics.interactions import SIGNIFICANCE, interaction_metrics, set_tests
    from hsets_widgets.runs.runner import read_item, run_settings

    hsets = "hsets:segmenter=slic,n_steps=4,nu=8,n_sets=2,n_samples=20"
    items = collect_images([save_photos(tmp_path / "in", photo48)])
    kw = dict(methods=[hsets], percentages=[0.3], curves=[], interactions=True)
    run_evaluation(items, small32, tmp_path / "e", moved_controls=6, **kw)
    rec = next(iter(read_results(tmp_path / "e" / "results.jsonl").values()))
    got = rec["methods"][hsets]
    # the run's numbers are the interaction test of the method's sets with six moved copies
    x = read_item(items[0], small32)
    made = attribute_sets(x, small32, rec["target"], method=hsets)
    tests = set_tests(x, small32, rec["target"], made.sets, made.labels, made.attribution, seed=0, n_moved=6)
    assert max(len(t.controls) for t in tests) > 4          # more than the default's four controls
    for key, value in interaction_metrics(tests).items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["interaction_p"] >= 1 / (1 + max(len(t.controls) for t in tests))
    assert got["interaction_significant"] == np.mean([t.p_value < SIGNIFICANCE for t in tests])
    # the folder was made with 6: a rerun with the default is refused, one with 6 resumes
    with pytest.raises(ValueError, match="other settings.*moved_controls"):
        run_evaluation(items, small32, tmp_path / "e", **kw)
    assert run_evaluation(items, small32, tmp_path / "e", moved_controls=6, **kw)["n_resumed"] == len(items)
    # settings are checked when made: a count of controls without the test, or not a count
    with pytest.raises(ValueError, match="interactions=True"):
        run_settings(methods=["random"], moved_controls=19)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="moved_controls"):
            run_settings(methods=["random"], interactions=True, moved_controls=bad)


# ---- the Ray path's pieces, without Ray --------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (dict(workers=0), "--workers must be a whole number >= 1, got 0"),
    (dict(workers=1.5), "--workers must be a whole number >= 1, got 1.5"),
    (dict(workers=True), "--workers must be a whole number >= 1, got True"),
    (dict(threads_per_worker=0), "--threads-per-worker must be a whole number >= 1"),
    (dict(max_attempts=0), "--max-attempts must be a whole number >= 1, got 0"),
    (dict(gpus_per_worker=-1.0), "--gpus-per-worker must be >= 0, got -1.0"),
    (dict(gpus_per_worker=float("nan")), "--gpus-per-worker must be >= 0"),
])
def test_cluster_options_refuse_bad_values_when_made(options, message):
    from hsets_widgets.runs.cluster import ClusterOptions

    with pytest.raises(ValueError) as info:
        ClusterOptions(**options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cluster_options_defaults_and_summary():
    import dataclasses

    from hsets_widgets.runs.cluster import ClusterOptions

    opts = ClusterOptions(workers=2, threads_per_worker=3)
    assert opts.device == "cpu" and ClusterOptions(gpus_per_worker=0.5).device == "cuda"
    assert opts.summary(2, 1.5) == {"n": 2, "threads_per_worker": 3, "gpus_per_worker": 0.0,
                                    "address": "local", "startup_seconds": 1.5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.workers = 0


def test_run_on_ray_wants_run_settings_and_cluster_options(tmp_path):
    from hsets_widgets.runs.cluster import ClusterOptions, run_on_ray

    with pytest.raises(TypeError, match="run_settings"):
        run_on_ray([], imagenet_tiny, tmp_path / "e", {"methods": ["random"]}, ClusterOptions())
    assert not (tmp_path / "e").exists()


class _Died(Exception):
    pass


class _FakeRay:
    """Just what the scheduler asks of Ray: results come back at once, in the order asked."""

    class exceptions:  # noqa: N801 - Ray's own spelling
        RayActorError = WorkerCrashedError = ObjectLostError = OutOfMemoryError = NodeDiedError = _Died

        class ActorUnavailableError(Exception):
            pass

        class RayTaskError(Exception):
            pass

    @staticmethod
    def wait(refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref):
        return ref()


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return lambda: self.fn(*args)      # a "reference": called by get()


class _Worker:
    def __init__(self, w, dies):
        def evaluate(item, x, prev, prev_maps):
            if dies:
                raise _Died("killed")
            return {"record": {"key": item.key}, "maps": {}, "pid": 100 + w, "seconds": 0.1}

        self.evaluate = _Remote(evaluate)
        self.describe = _Remote(lambda: {"pid": 200 + w, "host": "here"})


class _State:
    def __init__(self, items):
        self.items, self.counts, self.stored, self.failed = items, {"resumed": 0}, [], []

    def read(self, item):
        return "pixels"

    def previous(self, item):
        return None, {}

    def store(self, record, maps):
        self.stored.append(record["key"])

    def fail(self, item, reason, attempts):
        self.failed.append((item.key, attempts))


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_scheduler_retries_an_image_whose_worker_died_on_another_worker(max_attempts):
    from collections import deque

    from hsets_widgets.runs.cluster import Scheduler
    from hsets_widgets.runs.datasets import ImageItem

    items = [ImageItem(Path("a.png")), ImageItem(Path("b.png"))]
    state, events, progress = _State(items), [], []
    workers = [_Worker(0, dies=True), _Worker(1, dies=False)]        # worker 0 dies on every image
    todo = deque((item, 0) for item in items)
    Scheduler(_FakeRay, workers, {0: 100, 1: 101}, state, todo, max_attempts,
              lambda stage, done, total: progress.append(done), events.append).run()
    a, b = (i.key for i in items)
    kinds = [(e.kind, e.worker, e.image) for e in events]
    if max_attempts == 1:        # no second try: recorded as failed, never stored
        assert state.failed == [(a, 1)] and state.stored == [b]
        assert ("failed", 0, "a.png") in kinds
    else:                        # a goes back to the queue and to worker 1, not to worker 0 again
        assert state.failed == [] and sorted(state.stored) == sorted([a, b])
        assert kinds.index(("retry", 0, "a.png")) < kinds.index(("done", 1, "a.png"))
        assert ("done", 0, "a.png") not in kinds
    assert progress[-1] == 2


def test_plots_and_csv_are_written_atomically(tmp_path, monkeypatch):
    """A write that fails half-way leaves the old file (or none), never a torn one."""
    import matplotlib.figure

    from hsets_widgets.plumbing.files import OutputError
    from hsets_widgets.runs.report import plot_curves
    from hsets_widgets.runs.store import write_image_csv

    def torn(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", torn)
    summary = {"random": {"curves": {"morf": {"percentages": [0.1, 0.5], "n": 1,
                                              "accuracy_mean": [1, 0], "accuracy_std": [0, 0],
                                              "probability_mean": [.9, .1], "probability_std": [0, 0]}}}}
    png = tmp_path / "road_morf.png"
    png.write_bytes(b"the old plot")
    with pytest.raises(OutputError, match="No space left"):
        plot_curves(summary, "morf", png)
    assert png.read_bytes() == b"the old plot" and sorted(tmp_path.iterdir()) == [png]

    class Unwritable:
        def __str__(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):      # fails after the header
        write_image_csv(tmp_path / "image.csv", {"path": "x.png", "target": 1,
                                                 "methods": {"random": {"sparsity": Unwritable()}}})
    assert sorted(tmp_path.iterdir()) == [png]


# ---- resuming an interrupted or changed run -----------------------------------------------------
def test_interrupted_evaluation_resumes_without_duplicates(tmp_path, photo48):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    for i in range(2):
        Image.fromarray((np.roll(photo48, i * 5, 0) * 255).astype(np.uint8)).save(tmp_path / f"p{i}.png")
    clf = tiny_classifier(torch.float32, size=48, width=6)
    items = collect_images([tmp_path])
    out = tmp_path / "eval"
    run_evaluation(items, clf, out, methods=["random"], percentages=[0.2], limit=1)
    with open(out / "results.jsonl", "a") as fh:    # killed while writing the second record
        fh.write('{"key": "half')
    with pytest.warns(UserWarning, match="cut short"):
        m = run_evaluation(items, clf, out, methods=["random"], percentages=[0.2])
    keys = [json.loads(line)["key"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert m["n_images"] == 2 and len(keys) == len(set(keys)) == 2
    assert os.path.getsize(out / "metrics.json") > 0


FAST = dict(methods=["random"], percentages=[0.5], curves=[])


def test_resuming_with_other_weights_in_python(tmp_path, photo48, small32):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    items = [ImageItem(folder / "p0.png")]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    with torch.no_grad():
        small32.module.head.bias += 1.0
    with pytest.raises(ValueError, match="other model weights.*model tiny"):
        run_evaluation(items, small32, tmp_path / "r", **FAST)
    # a folder written before weights were fingerprinted is accepted once, and fingerprinted
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    del cfg["weights"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    assert run_evaluation(items, small32, tmp_path / "r", **FAST)["n_resumed"] == 1
    assert "weights" in json.loads((tmp_path / "r" / "config.json").read_text())


def test_a_photo_edited_in_place_is_evaluated_again(tmp_path, photo48, small32):
    from hsets_widgets.runs.store import read_results

    folder = save_photos(tmp_path / "imgs", photo48, 2)
    items = [ImageItem(folder / f"p{i}.png") for i in range(2)]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    edited = np.ascontiguousarray(photo48[::-1])     # the same file name, other pixels
    Image.fromarray((edited * 255).astype(np.uint8)).save(folder / "p0.png")
    with pytest.warns(UserWarning, match=r"p0\.png changed since it was evaluated"):
        m = run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert (m["n_computed"], m["n_resumed"]) == (1, 1)
    done = read_results(tmp_path / "r" / "results.jsonl")
    import hashlib

    assert done[items[0].key]["file"]["sha256"] == hashlib.sha256((folder / "p0.png").read_bytes()).hexdigest()
    os.utime(folder / "p1.png")                      # touched, not changed: still resumed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert (m["n_computed"], m["n_resumed"]) == (0, 2)


DAMAGED = [b"null", b"[1, 2]", b'{"status": "ok"}', b'{"status": "ok", "key": "k", "slug": "s", "path": "p", '
           b'"target": 1}', b"\xff\xfe not utf-8", b'{"status": "ok", "ke', b"\x00\x00\x00\x00", b"7",
           b"[" * 100000]


@pytest.mark.parametrize("bad", DAMAGED, ids=range(len(DAMAGED)))
def test_a_damaged_middle_line_is_skipped_and_the_folder_resumes(tmp_path, photo48, small32, bad):
    folder = save_photos(tmp_path / "imgs", photo48, 2)
    items = [ImageItem(folder / f"p{i}.png") for i in range(2)]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    path = tmp_path / "r" / "results.jsonl"
    first, second = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(first + bad + b"\n" + second)
    with pytest.warns(UserWarning, match=r"results\.jsonl, line 2: skipped a damaged record"):
        m = run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert (m["n_resumed"], m["n_computed"]) == (2, 0)


# ---- settings checked in Python too -------------------------------------------------------------
def test_limit_in_python_is_checked_too(tmp_path, photo48, small32):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    items = collect_images([save_photos(tmp_path / "in", photo48)])
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="limit"):
            run_evaluation(items, small32, tmp_path / "o", methods=["random"], limit=bad)


def test_noise_is_checked_in_python_too():
    from hsets_widgets.runs.runner import run_settings

    for bad in (-5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise"):
            run_settings(methods=["random"], noise=bad)


# ---- one writer per folder; the output folder inside the input; a read-only metrics.json --------
class Gate(nn.Module):
    """A tiny classifier that waits at its second forward pass until it is let go."""

    def __init__(self):
        super().__init__()
        self.net = tiny_classifier(torch.float32, size=48, width=6).module
        self.entered, self.release, self.calls = threading.Event(), threading.Event(), 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            self.entered.set()
            self.release.wait(60)
        return self.net(x)


def test_a_second_evaluation_of_the_same_folder_is_refused(tmp_path, photo48):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    items = collect_images([save_photos(tmp_path / "in", photo48)])
    gate = Gate()
    first_clf = wrap_module(gate, normalize=lambda x: x, input_size=48, class_names=list("abcde"))
    results = {}
    first = threading.Thread(target=lambda: results.setdefault(
        "first", run_evaluation(items, first_clf, tmp_path / "o", methods=["random"], percentages=[0.5],
                                curves=[])))
    first.start()
    try:
        assert gate.entered.wait(60)
        with pytest.raises(RuntimeError, match="another evaluation is writing to .*o.*wait for it"):
            run_evaluation(items, tiny_classifier(torch.float32, size=48, width=6), tmp_path / "o",
                           methods=["random"], percentages=[0.5], curves=[])
    finally:
        gate.release.set()
        first.join(60)
    assert results["first"]["n_images"] == 2
    lines = (tmp_path / "o" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    again = run_evaluation(items, first_clf, tmp_path / "o", methods=["random"], percentages=[0.5], curves=[])
    assert again["n_resumed"] == 2                     # the lock went with the first run


def test_out_inside_the_input_folder_is_not_read_as_input(tmp_path, photo48, small32):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    folder = save_photos(tmp_path / "photos", photo48)
    out = folder / "eval"
    first = run_evaluation(collect_images([folder]), small32, out, methods=["random"], percentages=[0.5])
    assert any(out.glob("*.png"))                      # plots that a rescan would find
    second = run_evaluation(collect_images([folder]), small32, out, methods=["random"], percentages=[0.5])
    assert first["n_images"] == second["n_images"] == 2 and second["n_skipped"] == 0
    assert second["methods"] == first["methods"]


def test_a_read_only_metrics_file_is_not_replaced(capsys, tmp_path, photo48, small32):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    items = [ImageItem(folder / "p0.png")]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    metrics = tmp_path / "r" / "metrics.json"
    before = metrics.read_text()
    metrics.chmod(0o444)
    with pytest.raises(PermissionError, match="metrics.json is read-only"):
        run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert metrics.read_text() == before


# ---- labels from class folders ------------------------------------------------------------------
def test_class_folders_the_model_cannot_predict_get_no_label(tmp_path, photo48):
    from hsets_widgets.runs.datasets import collect_images

    for name in ("3", "7", "²", "-1"):
        save_photos(tmp_path / name, photo48, 1)
    with pytest.warns(UserWarning, match="model has 5 classes"):
        items = collect_images([tmp_path], class_names=list("abcde"))
    labels = {i.path.parent.name: i.label for i in items}
    assert labels == {"3": 3, "7": None, "²": None, "-1": None}


# ---- matched-support sparsity over one basis after a stopped run and other methods --------------
def sparse(x, classifier, target=None):
    """A map with 10 pixels of support (matched support 10 wherever it takes part)."""
    m = np.zeros(tuple(x.shape[-2:]))
    m.flat[:10] = np.arange(1, 11)
    return m


def test_matched_support_is_over_this_runs_methods_on_every_image(tmp_path, photo48, small32):
    from hsets_widgets.metrics.sparsity import pixel_map, support_size
    from hsets_widgets.runs.store import read_results

    folder = save_photos(tmp_path / "imgs", photo48, 3)
    items = [ImageItem(folder / f"p{i}.png") for i in range(3)]
    one = dict(percentages=[0.5], curves=[])
    run_evaluation(items[:1], small32, tmp_path / "r", methods=["random", sparse], **one)   # then stopped
    m = run_evaluation(items, small32, tmp_path / "r", methods=["random", "gradient"], **one)
    done = read_results(tmp_path / "r" / "results.jsonl")
    full = [support_size(pixel_map(np.asarray(photo48)[..., 0] + 1))] * 3        # all 48 x 48 pixels
    assert [done[i.key]["methods"]["gradient"]["matched_support"] for i in items] == full
    assert m["methods"]["random"]["matched_support"]["mean"] == full[0]
    # a resumed record matched over other methods is matched again for the summary
    m = run_evaluation(items[:1], small32, tmp_path / "r", methods=["random", sparse], **one)
    assert m["methods"]["random"]["matched_support"]["mean"] == 10
    m = run_evaluation(items, small32, tmp_path / "r", methods=["random", "gradient"], **one)
    assert m["n_resumed"] == 3 and m["methods"]["random"]["matched_support"]["mean"] == full[0]
