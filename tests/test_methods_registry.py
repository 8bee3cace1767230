"""Method specs and their options (methods/registry.py): one schema per method, checked by
get_method before any work; a method listed twice refused; property (hypothesis): every spec is
a method with checked options or one line of ValueError."""
import numpy as np
import pytest
from conftest import MANY as FAST
from hypothesis import given
from hypothesis import strategies as st

from hsets_widgets.hsets.presets import get_config
from hsets_widgets.methods.registry import METHODS, attribute, get_method, get_methods, parse_method_spec

# ---- method options, one schema -----------------------------------------------------------------
BAD_OPTIONS = ["ig:bogus=1", "caso:n_iter=-1", "caso:l2=-1", "caso:power_iterations=0", "moxi:grid=0",
               "archipelago:top_k=0", "ih:n_steps=0", "archipelago:paint=bogus", "smoothgrad:sigma=nan",
               "moxi:score=bogus", "ig:baseline=purple", "archipelago:segmenter=bogus", "hsets:nu=0",
               "hsets:paper,bogus=1", "random:seed=-1", "gradient:n_steps=3", "moxi:max_steps=0",
               "ig:rule=bogus", "cafo:step=0", "archipelago:batch_size=0"]


@pytest.mark.parametrize("spec", BAD_OPTIONS)
def test_bad_method_options_are_refused_by_get_method(spec):
    key = spec.split(":")[1].split(",")[-1].split("=")[0]
    with pytest.raises(ValueError, match=key) as err:
        get_method(spec)
    assert "\n" not in str(err.value) and spec in str(err.value)


def test_every_builtin_method_declares_exactly_the_options_its_function_takes():
    import inspect

    for name, kind in METHODS.items():
        if name == "hsets":
            continue
        params = [p for p in list(inspect.signature(kind.fn).parameters)[2:]
                  if p not in ("target", "progress", "cancel")]
        assert kind.options is not None and sorted(kind.options) == sorted(params), name


def test_valid_method_options_still_run(image8, tiny64):
    amap = attribute(image8, tiny64, 0, method="caso:n_iter=2,power_iterations=2")
    assert amap.shape[-2:] == (8, 8) and np.abs(amap).sum() > 0


@pytest.mark.parametrize("methods", [["random", "RANDOM"], ["ig", "ig"], ["hsets", "hsets:default"],
                                     ["random", " random"]])
def test_a_method_listed_twice_is_refused(methods):
    with pytest.raises(ValueError, match="twice"):
        get_methods(methods)


# ---- properties (hypothesis) --------------------------------------------------------------------
NAMES = st.sampled_from(sorted(METHODS) + ["bogus", "IG", "Random"])


KEYS = st.sampled_from(sorted({k for kind in METHODS.values() for k in (kind.options or {})}
                              | {"preset", "nu", "mu", "bogus", "segmenter", "seed", "n_sets"}))


VALUES = st.one_of(st.integers(-5, 70), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["nan", "inf", "-1", "0", "1e3", "slic", "quickshift", "grey", "zeros",
                                    "sets", "all", "logit", "adaptive", "none", "true", "", "bogus", "paper"]))


SPECS = st.builds(lambda name, pairs: name + (":" + ",".join(f"{k}={v}" for k, v in pairs) if pairs else ""),
                  NAMES, st.lists(st.tuples(KEYS, VALUES), max_size=3))


@FAST
@given(SPECS)
def test_a_method_spec_is_a_checked_method_or_one_line_of_value_error(spec):
    try:
        m = get_method(spec)
    except ValueError as err:
        msg = str(err)
        assert msg and "\n" not in msg and ("method" in msg or "preset" in msg or spec.split(":")[0] in msg)
        return
    name, options = parse_method_spec(spec)
    kind = METHODS[name]
    assert m.fn is kind.fn
    if name == "hsets":                  # its options are H-Sets settings: a config accepts them
        settings = {k: v for k, v in options.items() if k not in ("preset", "segmenter", "seed")}
        get_config(options.get("preset", "default"), **settings)
        return
    checks = kind.option_checks()         # every option it kept is declared and passes its check
    for key, value in options.items():
        assert key in checks and checks[key](value) is None
