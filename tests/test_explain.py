"""H-Sets end to end on a small real network and a real photo."""
import json
import subprocess
import sys

import numpy as np
import pytest

from hsets_widgets.hsets.explain import Explainer, explain
from hsets_widgets.hsets.explanation import Explanation, equal, first_difference
from hsets_widgets.hsets.presets import PRESETS, get_config
from hsets_widgets.plumbing.progress import Cancelled, CancelToken


def test_explanation_saves_and_loads_losslessly(small32, photo48, tmp_path):
    ex = explain(photo48, small32, segmenter="slic", n_steps=8, nu=20, n_sets=3)
    assert 1 <= len(ex.sets) <= 3
    for s in ex.sets:
        assert 1 <= len(s) <= 20 and s.members[0] == s.seed and np.isfinite(s.value)
        assert ex.labels[s.seed_yx] == s.segment  # each seed lies in its segment
    assert ex.heatmap.shape == (48, 48) and np.count_nonzero(ex.heatmap) > 0
    back = Explanation.load(ex.save(tmp_path / "e.npz"))
    assert equal(ex, back), first_difference(ex, back)


def test_heatmap_paints_each_set_with_its_value(small32, photo48):
    ex = explain(photo48, small32, segmenter="slic", n_steps=8, nu=12, n_sets=2, combine="sum",
                 member_weights="flat")
    expect = np.zeros((48, 48))
    for k, s in enumerate(ex.sets):
        expect[ex.set_mask(k)] += s.value
    np.testing.assert_allclose(ex.heatmap, expect)


def test_a_float64_model_is_explained_from_a_float32_image(small32, photo48):
    import torch
    from conftest import tiny_classifier

    wide = tiny_classifier(torch.float64, size=48, width=6)          # small32's weights, in float64
    kw = dict(segmenter="slic", n_steps=6, nu=12, n_sets=2, n_samples=50)
    from_array = Explainer(photo48, wide, **kw)
    from_tensor = Explainer(torch.from_numpy(photo48.transpose(2, 0, 1).copy()), wide, **kw)
    assert from_array.x.dtype == from_tensor.x.dtype == torch.float64     # the model's dtype, not the image's
    a, b = from_array.run(), from_tensor.run()
    assert [(s.members.tolist(), s.value) for s in a.sets] == [(s.members.tolist(), s.value) for s in b.sets]
    np.testing.assert_array_equal(a.heatmap, b.heatmap)
    assert [s.members.tolist() for s in a.sets] == [s.members.tolist() for s in explain(photo48, small32, **kw).sets]


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


@pytest.mark.slow
def test_cli_explain_writes_files_and_prints_the_prediction(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "hsets_widgets.cli.main", "explain", "coffee",
                        "--segmenter", "slic", "--n-sets", "1", "--nu", "8", "--n-steps", "8",
                        "--out", str(out), "--quiet", "--interactions"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "predicted: " in r.stdout
    predicted = r.stdout.split("predicted: ")[1].split("\n")[0].lower()
    assert "cup" in predicted or "espresso" in predicted, predicted
    from PIL import Image

    with Image.open(out / "heatmap.png") as heat, Image.open(out / "compare.png") as compare:
        assert min(heat.size) >= 512 and compare.size[0] > 2 * compare.size[1]   # three panels side by side
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["sets"]) == 1 and summary["sets"][0]["size"] <= 8
    # --interactions: each set's test against its controls, in the summary and on the console
    test = summary["sets"][0]["interactions"]
    assert test["set"]["n_pixels"] == summary["sets"][0]["size"] and len(test["controls"]) == 4
    assert 0 <= test["set"]["nonadditive"] <= 1 and 0 < test["p_value"] <= 1
    assert test["verdict"] in r.stdout
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


def test_settings_are_frozen_and_checked_when_made():
    import dataclasses

    cfg = get_config("default")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nu = 500
    assert PRESETS["default"].nu == cfg.nu   # nobody can change a preset for later runs
    for bad, match in [(dict(paint="masks"), "paint='masks'.*'pixels', 'mask'"),
                       (dict(within_mask="maybe"), "within_mask.*True or False"),
                       (dict(dtype="bogus"), "dtype='bogus'.*'float32', 'float64'"),
                       (dict(nu=0), "nu=0.*>= 1"), (dict(n_samples=0), "n_samples=0"),
                       (dict(n_sets=0), "n_sets=0.*one per segment"), (dict(mask_limit=0), "mask_limit"),
                       (dict(member_weights="shapley"), "member_weights"), (dict(nu_split="area"), "nu_split"),
                       (dict(beta=float("nan")), "beta=nan"), (dict(fresh=True, threshold="minmax"), "fresh")]:
        with pytest.raises(ValueError, match=match):
            get_config("default", **bad)


def test_with_settings_shares_what_stays_valid(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8)
    e.attribution()
    grown = e.grow(e.seeds(1)[0], nu=10)
    other = e.with_settings(mu=3, nu=20, row_blur=1.0, fresh=True)
    assert other.rows is e.rows and other.attribution() is e.attribution()
    assert other.segment() is e.segment() and other.config.nu == 20 and e.config.nu != 20
    n = e.rows.n_computed
    again = other.grow(other.seeds(1)[0], mu=8, nu=10, threshold="topk")   # fresh, blurred rule
    assert again.rule.fresh and again.rule.blur == 1.0 and grown.rule.blur == e.config.row_blur == 2.0
    assert other.rows.n_computed >= n
    assert e.with_settings(beta=20.0).rows is not e.rows             # another curvature: new rows
    assert e.with_settings(n_steps=16).attribution() is not e.attribution()
    paper = e.with_settings("paper")
    assert paper.config.preset == "paper" and paper.rows is e.rows   # same curvature and features


def test_one_set_per_segment_and_sizes_split_by_mass(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, n_sets=None)
    labels = e.segment().labels
    assert len(e.seeds()) == len(np.unique(labels[labels > 0]))
    m = e.with_settings(n_sets=3, nu=300, nu_split="mass", within_mask=True)
    seeds = m.seeds()
    mass = m.segment_mass()
    sizes = [m.set_size(s) for s in seeds]
    total = sum(mass[s.segment] for s in seeds)
    for s, size in zip(seeds, sizes):
        area = int((labels == s.segment).sum())
        assert size == min(area, max(1, round(300 * mass[s.segment] / total)))
    grown = m.grow_many(seeds)
    assert all(len(g) <= size for g, size in zip(grown, sizes))


def test_member_weights_order_pixels_inside_a_set(small32, photo48):
    from hsets_widgets.hsets.heatmap import member_weights

    w = member_weights(5, "banzhaf", np.array([0.3, -1.0, 2.0, 0.0, 0.5]))
    assert w.mean() == pytest.approx(1.0) and list(np.argsort(w)) == [1, 3, 0, 4, 2]
    assert np.allclose(member_weights(4, "join"), [1.5, 1 + 1 / 6, 1 - 1 / 6, 0.5])
    assert member_weights(3, "flat").tolist() == [1, 1, 1]
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, n_sets=2, nu=12, n_samples=200,
                  exact_limit=0)
    sets = [e.interaction_set(s, g) for s, g in zip(e.seeds(), e.grow_many(e.seeds()))]
    heat = e.with_settings(member_weights="banzhaf").heatmap(sets)
    s = sets[0]
    painted = heat.ravel()[s.members]
    if len(sets) == 1 or not np.intersect1d(s.members, sets[1].members).size:
        assert painted.mean() == pytest.approx(s.value)
        assert np.argmax(painted) == np.argmax(s.banzhaf) and np.argmin(painted) == np.argmin(s.banzhaf)
    flat = e.heatmap(sets)
    assert set(np.flatnonzero(flat)) == set(np.flatnonzero(heat))   # same pixels, other values


def test_small_segments_are_painted_whole(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, n_sets=None, nu=4)
    sets = [e.interaction_set(s, g) for s, g in zip(e.seeds(), e.grow_many(e.seeds()))]
    labels = e.segment().labels
    limit = float(np.median([(labels == s.segment).mean() for s in sets]))
    heat = e.with_settings(paint="mask", mask_limit=limit).heatmap(sets)
    allowed = np.zeros(labels.shape, bool)
    for s in sets:
        seg = labels == s.segment
        if seg.mean() <= limit:
            assert np.all(heat[seg] != 0)     # a small segment: painted whole
            allowed |= seg
        else:
            allowed.ravel()[s.members] = True  # a large one: only the set's pixels
    assert not np.any(heat[~allowed])


def test_authors_code_preset_drops_the_relu6_clip_and_caps_as_their_code():
    cfg = get_config("authors-code")
    assert cfg.keep_clip is False and cfg.cap == "authors" and cfg.curvature == "surrogate"
    assert "clip dropped" in cfg.curvature_spec.describe()
    assert get_config("default").keep_clip is True


def test_peak_seeds_sit_on_separate_maxima_of_the_smoothed_attribution():
    from hsets_widgets.hsets.seeds import select_peaks

    a = np.zeros((3, 64, 64))
    a[0, 10, 10], a[1, 12, 12] = 5.0, 4.0      # one blob: a single peak, at its strongest pixel
    a[2, 40, 50] = 3.0
    a[:, 30, 5] = -9.0                          # negative attribution never seeds
    labels = np.zeros((64, 64), int)
    labels[32:, :] = 2
    seeds = select_peaks(a, None, sigma=2.0, spacing=8, labels=labels)
    assert [s.yx for s in seeds] == [(10, 10), (40, 50)] and [s.segment for s in seeds] == [0, 2]
    assert [s.index for s in seeds] == [10 * 64 + 10, 40 * 64 + 50] and seeds[0].attribution == 5.0
    assert len(select_peaks(a, 1, 2.0, 8)) == 1
    chan = select_peaks(a, None, 2.0, 8, features="channel")
    assert chan[1].index == 2 * 64 * 64 + 40 * 64 + 50
    assert select_peaks(-np.abs(a), None, 2.0, 8) == []
    with pytest.raises(ValueError, match="spacing"):
        select_peaks(a, 3, 2.0, 0)


def test_explainer_seeds_at_peaks(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, seeding="peaks", n_sets=4, seed_blur=2.0,
                  seed_spacing=6)
    seeds = e.seeds()
    assert 1 <= len(seeds) <= 4
    ys = [s.yx for s in seeds]
    assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) > 6 - 2 * 2 for i, a in enumerate(ys) for b in ys[i + 1:])
    ex = e.run()
    assert len(ex.sets) == len(seeds) and ex.settings["seeding"] == "peaks"


def test_seed_orders_rank_segments_as_documented():
    from hsets_widgets.hsets.seeds import select_seeds

    labels = np.zeros((6, 6), int)
    labels[:, :2], labels[:, 2:5], labels[:, 5] = 1, 2, 3         # areas 12, 18, 6
    a = np.zeros((3, 6, 6))
    a[0, 0, 0] = 5.0                                              # segment 1: one strong pixel
    a[0, :, 2:5] = 0.5                                            # segment 2: most mass (9)
    a[0, 3, 5] = 1.0                                              # segment 3
    order = {o: [s.segment for s in select_seeds(a, labels, 3, order=o)] for o in ("mass", "max", "size")}
    assert order == {"mass": [2, 1, 3], "max": [1, 3, 2], "size": [2, 1, 3]}
    assert select_seeds(a, labels, 1, order="max")[0].yx == (0, 0)
    with pytest.raises(ValueError, match="seed order"):
        select_seeds(a, labels, 2, order="random")


def test_mask_painting_and_max_combine():
    from hsets_widgets.hsets.heatmap import paint

    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:2, :3], b[1:3, 1:] = True, True                           # overlap at row 1, columns 1-2
    summed = paint([a, b], [2.0, -3.0], (4, 4), "sum")
    strongest = paint([a, b], [2.0, -3.0], (4, 4), "max")
    assert summed[1, 1] == -1.0 and strongest[1, 1] == -3.0 and strongest[0, 0] == 2.0 == summed[0, 0]
    assert paint([(np.array([0, 5]), np.array([1.0, 4.0]))], [1.0], (4, 4)).ravel()[[0, 5]].tolist() == [1.0, 4.0]
    with pytest.raises(ValueError, match="combine"):
        paint([a], [1.0], (4, 4), "mean")


def test_paint_mask_uses_the_seed_segment(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, n_sets=2, nu=6, paint="mask")
    ex = e.run()
    labels = ex.labels
    for s in ex.sets:
        assert np.all(ex.heatmap[labels == s.segment] != 0)   # the whole segment, not 6 pixels
    assert np.count_nonzero(ex.heatmap) > sum(len(s) for s in ex.sets)


def test_signed_painting_and_idg_vis_values(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, n_sets=None, nu=12, member_weights="flat")
    sets = [e.interaction_set(s, g) for s, g in zip(e.seeds(), e.grow_many(e.seeds()))]
    signed = e.with_settings(signed=True).heatmap(sets)
    plain = e.heatmap(sets)
    checked = 0
    for s in sets:           # sets grow inside their own segments, so they do not overlap
        expect = -1.0 if s.signed_score < 0 else 1.0
        assert np.allclose(signed.ravel()[s.members], expect * plain.ravel()[s.members])
        checked += 1
    assert checked == len(sets) >= 2 and np.allclose(np.abs(signed), np.abs(plain))
    vis = e.with_settings(set_score="idg-vis")
    for g in e.grow_many(e.seeds()[:3]):
        v_idg, v_vis = e.value(g.members), vis.value(g.members)
        assert v_vis.value >= v_idg.value - 1e-9 and v_vis.signed_score >= 0   # |.| inside the integral


def test_a_sets_value_depends_on_the_set_not_on_its_place_in_a_list(small32, photo48):
    """Values draw from a stream keyed by the config's seed and the set's seed: the same set has
    the same value however many sets come before it, and another config seed draws others."""
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, n_sets=3, nu=40, exact_limit=4)
    seeds = e.seeds()
    forward = e.grow_and_value(seeds)
    backward = e.grow_and_value(list(reversed(seeds)))
    assert [s.value for s in forward] == [s.value for s in reversed(backward)]
    alone = e.interaction_set(seeds[-1], e.grow(seeds[-1]))
    assert alone.value == forward[-1].value
    other = e.with_settings(seed=1).grow_and_value(seeds[:1])
    assert other[0].value != forward[0].value and not forward[0].exact


def test_input_model_target_come_first_and_settings_by_name(small32, photo48):
    target = Explainer(photo48, small32, segmenter="slic", n_steps=4).target
    other = (target + 1) % 5
    e = explain(photo48, small32, other, segmenter="slic", n_steps=4, nu=8, n_sets=1)
    assert e.target == other
    with pytest.raises(TypeError, match="the third argument is the target class, got 'paper'"):
        Explainer(photo48, small32, "paper")


def test_moving_to_a_preset_keeps_what_was_tuned_by_hand_and_the_cached_stages(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8, nu=40)
    ig = e.attribution()
    i = e.with_preset("interactions")
    assert (i.config.preset, i.config.row_floor, i.config.within_mask) == ("interactions", 0.3, False)
    assert (i.config.n_steps, i.config.nu) == (8, 40) and i.attribution() is ig
    back = i.with_preset("default")
    assert (back.config.preset, back.config.row_floor, back.config.within_mask, back.config.n_steps) == \
        ("default", 0.0, True, 8)
    paper = e.with_preset("paper")
    assert paper.config.threshold == "seed-fraction" and paper.config.n_steps == 8


# ---- settings checked when they are made, before any work ---------------------------------------
@pytest.mark.parametrize("bad, field", [(dict(paint="masks"), "paint"), (dict(within_mask="maybe"), "within_mask"),
                                        (dict(dtype="bogus"), "dtype"), (dict(combine="avg"), "combine"),
                                        (dict(sampler="sobol"), "sampler"), (dict(value_kind="sum"), "value_kind"),
                                        (dict(order="random"), "order"), (dict(beta=float("nan")), "beta")])
def test_bad_settings_fail_before_any_work(small32, photo48, monkeypatch, bad, field):
    import importlib

    engine = importlib.import_module("hsets_widgets.hsets.explain")   # the module (the package exports the function)

    def no_work(*a, **k):
        raise AssertionError("IG ran although the settings were invalid")

    monkeypatch.setattr(engine, "integrated_gradients", no_work)
    with pytest.raises(ValueError, match=rf"setting {field}=.*not valid: .*"):
        explain(photo48, small32, segmenter="slic", **bad)


def test_explicit_zero_or_negative_sizes_are_errors(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8)
    seed = e.seeds(1)[0]
    for nu in (0, -3):
        with pytest.raises(ValueError, match="nu must be a whole number >= 1"):
            e.grow(seed, nu=nu)
    with pytest.raises(ValueError, match="seeds must be a whole number >= 1"):
        e.seeds(0)


def test_out_of_range_target_is_named(small32, photo48):
    with pytest.raises(ValueError, match="target"):
        Explainer(photo48, small32, segmenter="slic", target=99)
