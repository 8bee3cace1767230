"""Settings declared once: each field's default, check, help and stale stages, and the command
line built from them."""
import argparse
from dataclasses import fields

import pytest

from hsets_widgets.cli.explain import OVERRIDES, add_common, checked_overrides
from hsets_widgets.hsets.presets import PRESETS, HSetsConfig, get_config


def parser():
    p = argparse.ArgumentParser(exit_on_error=False)
    add_common(p)
    return p


def test_every_setting_declares_its_check_and_help_and_is_a_flag():
    names = [f.name for f in fields(HSetsConfig)]
    for f in fields(HSetsConfig):
        assert callable(f.metadata["check"]) and f.metadata["help"].strip(), f.name
        assert f.metadata["check"](f.default) is None, f"{f.name}'s default fails its own check"
    assert set(OVERRIDES) == set(names) - {"preset"}
    text = parser().format_help()
    for name in OVERRIDES:
        assert f"--{name.replace('_', '-')}" in text


def test_the_interaction_mode_is_reachable_by_flags_and_by_its_preset():
    args = parser().parse_args(["--row-floor", "0.3", "--within-mask", "no"])
    overrides = checked_overrides(args)
    assert overrides == {"row_floor": 0.3, "within_mask": False}
    by_flags = get_config("default", **overrides)
    assert (by_flags.row_floor, by_flags.within_mask) == (PRESETS["interactions"].row_floor,
                                                           PRESETS["interactions"].within_mask)


@pytest.mark.parametrize("argv, option, need", [
    (["--nu", "0.5"], "--nu", "need a whole number"),
    (["--row-floor", "2"], "--row-floor", "need a fraction < 1"),
    (["--rule", "simpson"], "--rule", "use one of"),
    (["--beta", "nan"], "--beta", "need a finite number"),
    (["--memory-budget", "lots"], "--memory-budget", "lots"),
])
def test_a_bad_flag_value_names_the_option_and_what_it_needs_before_any_work(argv, option, need):
    with pytest.raises(argparse.ArgumentError) as err:
        parser().parse_args(argv)
    assert option in str(err.value) and need in str(err.value)


def test_a_flag_and_the_same_setting_by_set_agree():
    a = checked_overrides(parser().parse_args(["--mu", "64", "--n-sets", "all", "--max-rows", "none"]))
    b = checked_overrides(parser().parse_args(["--set", "mu=64", "--set", "n_sets=none", "--set", "max_rows=none"]))
    assert get_config("default", **a) == get_config("default", **b)


def test_the_engines_ig_defaults_are_the_settings_defaults():
    """The interaction test's top-IG control (computed with the engine's defaults when no IG is
    given) must be the IG the explainer seeds from."""
    import inspect

    from hsets_widgets.hsets.integrated_gradients import integrated_gradients

    params = inspect.signature(integrated_gradients).parameters
    cfg = get_config()
    assert (params["n_steps"].default, params["rule"].default, params["baseline"].default) == \
        (cfg.n_steps, cfg.rule, cfg.baseline)


# ---- presets are frozen -------------------------------------------------------------------------
def test_presets_cannot_be_changed_for_later_runs():
    cfg = get_config("default")
    with pytest.raises(AttributeError):
        cfg.nu = 500
    assert PRESETS["default"].nu == get_config("default").nu
