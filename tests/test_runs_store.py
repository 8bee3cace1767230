"""results.jsonl (runs/store.py): a torn last line is cut before appending, damaged lines are
skipped with a warning naming the file and line, never raised; examples and properties
(hypothesis)."""
import json
import warnings

import pytest
from conftest import MANY as FAST
from hypothesis import given
from hypothesis import strategies as st

from hsets_widgets.runs.store import read_results, record_problem, repair_results


# ---- a torn last line ---------------------------------------------------------------------------
def test_torn_results_line_is_cut_before_appending(tmp_path):
    from hsets_widgets.runs.store import read_results, repair_results

    path = tmp_path / "results.jsonl"
    whole = json.dumps({"key": "a", "path": "a.png", "slug": "a", "target": 0, "status": "ok", "methods": {}})
    path.write_text(whole + "\n" + '{"key": "b", "status": "o')
    with pytest.warns(UserWarning, match="cut short"):
        removed = repair_results(path)
    assert removed > 0 and path.read_text() == whole + "\n"
    assert list(read_results(path)) == ["a"]
    assert repair_results(path) == 0                     # a whole file is left alone
    path.write_text(whole)                               # valid JSON but no newline: fixed too
    with pytest.warns(UserWarning):
        repair_results(path)
    assert path.read_text() == ""


# ---- damaged lines (hypothesis) -----------------------------------------------------------------
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
