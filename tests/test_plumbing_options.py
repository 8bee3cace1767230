"""The settings grammar (plumbing/options.py): numbers and ``KEY=VALUE`` read as written or
refused naming the option, alike on the command line and in Python; examples, then properties
(hypothesis)."""
import argparse
import math

from conftest import FAST, one_line_error, run_cli
from hypothesis import given
from hypothesis import strategies as st

from hsets_widgets.hsets.presets import HSetsConfig, get_config
from hsets_widgets.methods.registry import parse_method_spec
from hsets_widgets.plumbing.options import NUMBERS, parse_assignments, parse_value, whole_number


# ---- one grammar for --set and method specs -----------------------------------------------------
def test_set_overrides_share_one_grammar_and_fail_in_one_line(tmp_path, capsys):
    from hsets_widgets.plumbing.options import parse_assignments

    assert parse_assignments(["nu=64", "mu=0.5", "fresh=false", "n_sets=none", "order=dfs"]) == {
        "nu": 64, "mu": 0.5, "fresh": False, "n_sets": None, "order": "dfs"}
    assert parse_method_spec("hsets:paper,nu=500,fresh=true") == ("hsets", {"preset": "paper", "nu": 500,
                                                                           "fresh": True})
    for bad, says in ((["--set", "bogus=1"], "unknown H-Sets setting"), (["--set", "mu"], "KEY=VALUE"),
                      (["--set", "order=sideways"], "order='sideways' is not valid")):
        code, _, err = run_cli(capsys, "explain", "chelsea", "--out", str(tmp_path / "o"), *bad)
        assert code == 1 and says in one_line_error(err, "explain"), err


# ---- properties (hypothesis) --------------------------------------------------------------------
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
