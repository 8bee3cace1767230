"""What is written (plumbing/files.py): strict JSON, files replaced atomically, staged folders all
new or all old; examples, then properties (hypothesis)."""
import json

import numpy as np
import pytest
from conftest import FAST, FILES
from hypothesis import given
from hypothesis import strategies as st

from hsets_widgets.plumbing.files import atomic_path, dumps, write_json


# ---- examples -----------------------------------------------------------------------------------
def test_json_is_strict_with_null_for_undefined_numbers(tmp_path):
    path = write_json(tmp_path / "s.json", {"value": float("nan"), "deep": [1.0, float("inf"), np.float32(2)]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    assert data == {"value": None, "deep": [1.0, None, 2.0]}
    assert dumps({"x": float("-inf")}) == '{"x": null}'


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


# ---- properties (hypothesis) --------------------------------------------------------------------
JSON_LIKE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.builds(np.float32, st.floats(width=32)), st.builds(np.int64, st.integers(-2 ** 63, 2 ** 63 - 1))),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


@FAST
@given(JSON_LIKE)
def test_written_json_is_always_strict(obj):
    import json

    from hsets_widgets.plumbing.files import dumps

    json.loads(dumps(obj), parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))


NAMES = st.sampled_from(["a.png", "b.json", "c.npz", "d.csv"])


@FILES
@given(st.dictionaries(NAMES, st.binary(max_size=8), max_size=4),
       st.dictionaries(NAMES, st.binary(max_size=8), max_size=4), st.booleans())
def test_a_staged_folder_is_all_new_or_all_old(tmp_path, old, new, fail):
    import shutil

    from hsets_widgets.plumbing.files import staged_outputs

    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    if old:
        out.mkdir()
        for name, data in old.items():
            (out / name).write_bytes(data)
    try:
        with staged_outputs(out) as stage:
            for name, data in new.items():
                (stage / name).write_bytes(data)
            if fail:
                raise RuntimeError("the run failed before its last file")
    except RuntimeError:
        pass
    expected = old if fail else {**old, **new}
    found = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    assert found == expected
