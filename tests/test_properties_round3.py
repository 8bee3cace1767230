"""Property-based tests (hypothesis) of issue 33: the method-option grammar (every spec is
either a method with checked options or one line of ValueError, before any work) and damaged
lines of ``results.jsonl`` (skipped with a warning naming the line, never an exception)."""
import json
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsets_widgets.methods.registry import METHODS, get_method, parse_method_spec
from hsets_widgets.runs.store import read_results, record_problem, repair_results

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

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
    if kind.options is not None:          # every option it kept is declared and passes its check
        for key, value in options.items():
            assert key in kind.options and kind.options[key](value) is None


def valid_record(i: int) -> dict:
    return {"key": f"/img/{i}.png", "path": f"/img/{i}.png", "slug": f"s{i}", "label": None, "target": i % 3,
            "methods": {"random": {"sparsity": 0.1 * i}}, "status": "ok"}


DAMAGE = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda i, drop: json.dumps({k: v for k, v in valid_record(i).items() if k != drop}).encode(),
              st.integers(0, 9), st.sampled_from(["key", "slug", "methods", "target", "path"])),
)


@FAST
@given(n=st.integers(1, 6), damaged=st.lists(st.tuples(st.integers(0, 6), DAMAGE), max_size=4))
def test_damaged_lines_are_skipped_with_a_warning_never_raised(tmp_path_factory, n, damaged):
    path = tmp_path_factory.mktemp("r") / "results.jsonl"
    lines = [json.dumps(valid_record(i)).encode() for i in range(n)]
    for where, bad in sorted(damaged, reverse=True):
        lines.insert(min(where, len(lines) - 1), bad)      # damage in the middle, a valid line last
    path.write_bytes(b"\n".join(lines) + b"\n")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        repair_results(path)
        done = read_results(path)
    assert set(done) == {f"/img/{i}.png" for i in range(n)}
    for rec in done.values():
        assert record_problem(rec) == ""
    expected = 0
    for _, bad in damaged:
        try:
            expected += bool(bad.strip()) and record_problem(json.loads(bad.decode("utf-8"))) != ""
        except (ValueError, RecursionError):
            expected += 1
    skipped = [w for w in said if "skipped a damaged record" in str(w.message)]
    assert len(skipped) == expected
    assert all(f"{path}, line " in str(w.message) for w in skipped)


@pytest.mark.parametrize("bad", [b"null", b"[1, 2]", b'{"status": "ok"}', b"\xff", b"\x00\x00"])
def test_each_kind_of_damage_is_named(tmp_path, bad):
    path = tmp_path / "results.jsonl"
    path.write_bytes(json.dumps(valid_record(0)).encode() + b"\n" + bad + b"\n" +
                     json.dumps(valid_record(1)).encode() + b"\n")
    with pytest.warns(UserWarning, match=r"results\.jsonl, line 2: skipped a damaged record"):
        assert len(read_results(path)) == 2
