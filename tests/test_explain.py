"""H-Sets end to end on a small real network and a real photo."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hsets_widgets.explain import Explainer, explain
from hsets_widgets.explanation import Explanation, equal
from hsets_widgets.presets import PRESETS, get_config
from hsets_widgets.progress import CancelToken, Cancelled


def test_explanation_saves_and_loads_losslessly(small32, photo48, tmp_path):
    ex = explain(photo48, small32, segmenter="slic", n_steps=8, nu=20, n_sets=3)
    assert 1 <= len(ex.sets) <= 3
    for s in ex.sets:
        assert 1 <= len(s) <= 20 and s.members[0] == s.seed and np.isfinite(s.value)
        assert ex.labels[s.seed_yx] == s.segment  # each seed lies in its segment
    assert ex.heatmap.shape == (48, 48) and np.count_nonzero(ex.heatmap) > 0
    back = Explanation.load(ex.save(tmp_path / "e.npz"))
    assert equal(ex, back) is None


def test_heatmap_paints_each_set_with_its_value(small32, photo48):
    ex = explain(photo48, small32, segmenter="slic", n_steps=8, nu=12, n_sets=2, combine="sum")
    expect = np.zeros((48, 48))
    for k, s in enumerate(ex.sets):
        expect[ex.set_mask(k)] += s.value
    np.testing.assert_allclose(ex.heatmap, expect)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs(small32, photo48, preset):
    ex = explain(photo48, small32, preset=preset, segmenter="slic", n_steps=6, nu=10, n_sets=2,
                 n_samples=50)
    assert ex.settings["preset"] == preset and len(ex.sets) == 2
    if preset == "authors-code":
        assert ex.features == "channel" and ex.sets[0].value_kind == "sample-sum"
        assert ex.sets[0].n_samples == 50


def test_explainer_regrows_from_cache_and_accepts_user_seeds(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8)
    seed = e.seed_at(10, 30)
    assert seed.yx == (10, 30) and seed.index == 10 * 48 + 30
    big = e.grow(seed, mu=4, nu=40)
    n = e.rows.n_computed
    small = e.grow(seed, mu=4, nu=10)
    assert e.rows.n_computed == n and list(small.members) == list(big.members[:10])


def test_within_mask_confines_sets(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, within_mask=True, nu=60)
    seed = e.seeds(1)[0]
    g = e.grow(seed)
    labels = e.segment().labels.ravel()
    assert set(labels[g.members]) == {seed.segment}


def test_cancel_stops_and_progress_reports(small32, photo48):
    seen = []
    token = CancelToken()

    def progress(stage, done, total):
        seen.append(stage)
        if stage.startswith("growing set"):
            token.cancel()

    with pytest.raises(Cancelled):
        explain(photo48, small32, segmenter="slic", n_steps=8, progress=progress, cancel=token)
    assert "integrated gradients" in seen


def test_unknown_setting_is_named():
    with pytest.raises(TypeError, match="unknown H-Sets setting.*nuu"):
        get_config("default", nuu=3)
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("fastest")


def test_cli_explain_writes_files_and_prints_the_prediction(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "hsets_widgets.cli.main", "explain", "coffee",
                        "--segmenter", "slic", "--n-sets", "1", "--nu", "8", "--n-steps", "8",
                        "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "predicted: " in r.stdout and "cup" in r.stdout.split("predicted: ")[1].split("\n")[0].lower() or \
        "espresso" in r.stdout
    assert (out / "heatmap.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["sets"]) == 1 and summary["sets"][0]["size"] <= 8
    assert Explanation.load(out / "explanation.npz").target == summary["target"]


def test_cli_reports_bad_input_clearly(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hsets_widgets.cli.main", "explain", str(tmp_path / "nope.jpg"),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "image file not found" in r.stderr and "Traceback" not in r.stderr


def test_cli_demo_runs_offline_on_the_bundled_photo(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "hsets_widgets.cli.main", "demo", "--n-sets", "1", "--nu", "8",
                        "--n-steps", "8", "--segmenter", "slic", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                         "HSETS_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "cat" in r.stdout.split("predicted: ")[1].split("\n")[0]
    assert "1 interaction sets" in r.stdout and "wrote" in r.stdout
    assert (out / "heatmap.png").exists()


@pytest.mark.parametrize("score", ["probability", "log_probability"])
def test_softmax_scores(small32, photo48, score):
    import torch

    e = Explainer(photo48, small32, segmenter="slic", n_steps=64, score=score, rule="gauss-legendre")
    ig = e.attribution()
    probs = small32(e.x.unsqueeze(0)).softmax(-1)[0, e.target].detach()
    expect = float(probs) if score == "probability" else float(torch.log(probs))
    assert ig.f_x == pytest.approx(expect, rel=1e-5)
    assert ig.relative_completeness_error < 0.05
