"""Settings as registries: a threshold rule, a curvature ramp or a baseline added by name works
in the settings, the engine and the widgets' menus without touching their code."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hsets_widgets.hsets.curvature import RAMPS, CurvatureSpec, Ramp, register_ramp
from hsets_widgets.hsets.hessian import HessianRows
from hsets_widgets.hsets.integrated_gradients import BASELINE_FNS, make_baseline, register_baseline
from hsets_widgets.hsets.presets import get_config
from hsets_widgets.hsets.thresholds import THRESHOLD_RULES, RuleKind, ThresholdRule, candidates, register_rule


@pytest.fixture
def registered():
    added = []

    def add(table, name):
        added.append((table, name))

    yield add
    for table, name in added:
        table.pop(name, None)


def test_a_registered_threshold_rule_is_a_setting_and_a_cut(registered):
    register_rule(RuleKind("quantile", "above the mu-quantile of the row", (0.0, 1.0, 0.01, 0.9),
                           cut=None, text=lambda mu, sign: f"top {mu:g} {{what}} per row"))
    registered(THRESHOLD_RULES, "quantile")
    with pytest.raises(ValueError, match="not valid"):
        get_config(threshold="bogus")
    cfg = get_config(threshold="quantile", mu=3, fresh=True)       # validated against the table
    rule = ThresholdRule(cfg.threshold, cfg.mu, fresh=True)
    row = np.array([0.0, 5.0, -9.0, 1.0, 2.0])
    assert list(candidates(row, rule)) == [2, 1, 4]                 # a top-k rule: 3 largest |H|
    assert rule.describe() == "top 3 new members per row"


def test_a_registered_ramp_gives_the_same_rows_as_the_one_it_copies(registered):
    sp = RAMPS["softplus"]
    register_ramp(Ramp("softplus-copy", sp.value, sp.slope, sp.bend, "beta", lambda p: f"copy(beta={p:g}"))
    registered(RAMPS, "softplus-copy")
    assert get_config(curvature="softplus-copy").curvature == "softplus-copy"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 1)).double()
    x = torch.rand(3, 6, 6, dtype=torch.float64)
    f = lambda b: net(b)[:, 0]
    rows = {k: HessianRows(x, f, "pixel", CurvatureSpec(k, beta=5.0), batch_size=4).rows([0, 7])
            for k in ("softplus", "softplus-copy")}
    assert torch.allclose(torch.as_tensor(rows["softplus"]), torch.as_tensor(rows["softplus-copy"]))
    assert torch.as_tensor(rows["softplus"]).abs().max() > 0
    assert CurvatureSpec("softplus-copy", beta=5.0).describe() == "copy(beta=5)"


def test_a_registered_baseline_is_a_setting(registered):
    register_baseline("white", lambda x, classifier, blur_sigma: torch.ones_like(x))
    registered(BASELINE_FNS, "white")
    assert get_config(baseline="white").baseline == "white"
    assert make_baseline(torch.zeros(3, 4, 4), "white").min() == 1.0
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(torch.zeros(3, 4, 4), "purple")


def test_a_registered_segmenter_is_used_by_name_and_gets_the_prompt_setting_only_if_prompted(registered):
    from conftest import tiny_classifier

    from hsets_widgets import Explainer
    from hsets_widgets.segmentation import SEGMENTERS, SegmenterKind, register_segmenter
    from hsets_widgets.segmentation.superpixel import SuperpixelSegmenter

    seen = []

    def make(name, settings):
        seen.append(dict(settings))
        settings.pop("points_per_side", None)
        return SuperpixelSegmenter("slic", n_segments=6), None

    register_segmenter(SegmenterKind("halves", make, True, "test: a prompted stand-in"))
    registered(SEGMENTERS, "halves")
    ex = Explainer(torch.rand(3, 32, 32), model=tiny_classifier(torch.float32, size=32),
                   segmenter="halves", device="cpu", sam_points_per_side=3)
    assert ex.segment().labels.shape == (32, 32)
    assert seen == [{"points_per_side": 3}]
    with pytest.raises(Exception, match="unknown segmenter 'nope'.*halves"):
        from hsets_widgets.segmentation import get_segmenter
        get_segmenter("nope")


def test_a_registered_attribution_method_is_accepted_by_name_with_the_run_seed(registered):
    from hsets_widgets import METHODS, MethodKind, attribute, get_method, register_method

    def constant(x, classifier, target, *, progress=None, cancel=None, seed=0):
        return np.full(tuple(x.shape[-2:]), float(seed))

    register_method(MethodKind("constant", constant, True, "test: the seed everywhere"))
    registered(METHODS, "constant")
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    assert get_method("constant", seed=7).options == {"seed": 7}
    amap = attribute(torch.rand(3, 8, 8), net, method="constant:seed=2")
    assert np.all(np.asarray(amap) == 2.0)
    with pytest.raises(ValueError, match="unknown attribution method 'bogus'.*constant"):
        get_method("bogus")


def test_a_plain_function_without_the_target_is_refused_in_one_line_before_any_work():
    from hsets_widgets import get_method

    def two(x, classifier):
        return x.sum(0)

    with pytest.raises(TypeError, match=r"two\(x, classifier\) must take \(x, classifier, target\)"):
        get_method(two)


def test_every_builtin_method_follows_the_one_protocol_and_returns_a_map_with_sets():
    """One signature, one result type: each built-in is called the same way and answers with
    a MapWithSets whose map fits the image."""
    from conftest import tiny_classifier

    from hsets_widgets import BUILTIN_METHODS, METHODS, MapWithSets

    clf = tiny_classifier(size=16)
    x = torch.zeros(3, 16, 16, dtype=torch.float64)       # four coloured quadrants: segmenters find parts
    x[0, :8], x[1, :, :8], x[2, 8:, 8:] = 0.9, 0.6, 0.8
    quick = {"smoothgrad": {"n_samples": 2}, "ig": {"n_steps": 4}, "caso": {"n_iter": 1, "power_iterations": 1},
             "cafo": {"n_iter": 1}, "moxi": {"grid": 2, "max_steps": 2}, "ih": {"n_steps": 2, "top_k": 1},
             "archipelago": {"top_k": 2, "segmenter": "slic"}}
    for name in BUILTIN_METHODS:
        if name == "hsets":
            continue      # the explainer's own tests cover it end to end
        out = METHODS[name].fn(x, clf, 0, progress=None, cancel=None, **quick.get(name, {}))
        assert isinstance(out, MapWithSets), name
        assert np.asarray(out.map).shape[-2:] == (16, 16), name


def test_a_method_shown_as_a_layer_and_in_the_road_tab_is_computed_once(registered):
    """Every view reads one cached map per image and method (a method chosen as a layer and
    in the ROAD tab used to run twice)."""
    from conftest import tiny_classifier

    from hsets_widgets import METHODS, MethodKind, register_method
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.widgets import Explorer

    calls = []

    def counted(x, classifier, target, *, progress=None, cancel=None):
        calls.append(target)
        return np.linspace(0, 1, x.shape[-1] * x.shape[-2]).reshape(tuple(x.shape[-2:]))

    register_method(MethodKind("counted", counted, False, "test: counts its calls"))
    registered(METHODS, "counted")
    ex = Explainer(np.random.default_rng(0).random((32, 32, 3)), tiny_classifier(torch.float32, size=32), segmenter="slic",
                   n_steps=8, nu=8)
    e = Explorer(ex, readout=False)
    try:
        assert e.wait(120)
        e.state.show_method("counted")
        assert e.wait(120) and e.state.method_result is not None
        e.road.other.value = "counted"
        e.road.compute()
        assert e.wait(120) and "counted" in e.road.results
        assert calls == [ex.target]
        assert np.array_equal(e.road.maps["counted"], e.state.method_result.map)
    finally:
        e.state.cancel()


def test_the_method_in_the_old_third_place_is_refused_with_the_new_order_named():
    """input, model, target first (README's convention); the method goes by name."""
    from hsets_widgets import attribute, region_effect

    net, x = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)), torch.rand(3, 8, 8)
    with pytest.raises(TypeError, match=r"third argument of attribute is the target class.*method=.ig."):
        attribute(x, net, "random")
    with pytest.raises(TypeError, match=r"region_effect\(x, classifier, target, region=mask\)"):
        region_effect(x, net, np.ones((8, 8), bool))
    assert attribute(x, net, 2, method="random").shape == (8, 8)


def test_one_function_twice_is_the_same_method_and_two_of_one_name_only_share_a_column():
    """A plain function's identity is the function itself (its qualified name and module), not
    the adapter made for it: the same function twice is one method listed twice; two different
    functions of one name are two methods whose results would share a column."""
    from hsets_widgets.methods.registry import get_methods

    def make():
        def score(x, classifier, target):
            return x.sum(0)
        return score

    with pytest.raises(ValueError, match="'score' is the same method listed twice"):
        get_methods([score, score])
    with pytest.raises(ValueError, match=r"methods listed twice: \['score', 'score'\]"):
        get_methods([score, make()])
    assert len(get_methods([score, "random"])) == 2


def score(x, classifier, target):
    return -x.sum(0)
