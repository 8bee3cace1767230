"""``hsets evaluate`` on the command line: bad options refused in one line before the model
loads, metrics.json left alone, and a folder resumed with other weights refused."""
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import one_line_error, run_cli, save_photos
from PIL import Image

from hsets_widgets.model.models import load_classifier
from hsets_widgets.runs.datasets import ImageItem
from hsets_widgets.runs.runner import run_evaluation, run_settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- options refused in one line, metrics.json left alone ---------------------------------------
def test_evaluate_out_naming_a_file(capsys, tmp_path, photo48):
    f = tmp_path / "results"
    f.write_text("x")
    Image.fromarray((photo48 * 255).astype(np.uint8)).save(tmp_path / "p.png")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "p.png"), "--out", str(f), "--methods", "random")
    assert code == 1 and "existing file, not a folder" in one_line_error(err, "evaluate")


@pytest.mark.parametrize("limit", ["-1", "0", "1.5"])
def test_limit_must_be_at_least_one(capsys, tmp_path, photo48, limit):
    save_photos(tmp_path / "in", photo48)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text('{"n_images": 2}')
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "in", "--out", tmp_path / "o", "--limit", limit,
                           "--methods", "random")
    assert code == 1 and "--limit" in one_line_error(err, "evaluate")
    assert (tmp_path / "o" / "metrics.json").read_text() == '{"n_images": 2}'


@pytest.mark.parametrize("argv, says", [
    (["--noise", "-5"], "--noise"), (["--noise", "nan"], "--noise"), (["--batch-size", "0"], "--batch-size"),
    (["--match-support", "abc"], "--match-support"), (["--match-support", "2"], "--match-support"),
    (["--percentages", "-0.2"], "--percentages"), (["--seed", "x"], "--seed"),
    (["--workers", "0"], "--workers"), (["--max-attempts", "0"], "--max-attempts"),
    (["--moved-controls", "-1"], "--moved-controls"), (["--moved-controls", "19"], "--interactions"),
])
def test_bad_evaluate_numbers_fail_in_one_line_naming_the_option(capsys, tmp_path, photo48, argv, says):
    save_photos(tmp_path / "in", photo48, 1)
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "in", "--out", tmp_path / "o", "--methods", "random",
                           *argv)
    assert code == 1 and says in one_line_error(err, "evaluate")
    assert not (tmp_path / "o").exists()


def test_no_methods_is_refused_and_metrics_left_alone(capsys, tmp_path, photo48, small32):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    run_evaluation([ImageItem(folder / "p0.png")], small32, tmp_path / "o", methods=["random"],
                   percentages=[0.5], curves=[])
    before = (tmp_path / "o" / "metrics.json").read_text()
    code, _, err = run_cli(capsys, "evaluate", folder, "--methods", ",", "--out", tmp_path / "o")
    assert code == 1 and "--methods names no method" in one_line_error(err, "evaluate")
    assert (tmp_path / "o" / "metrics.json").read_text() == before
    for spec in ("random,RANDOM", "ig,ig"):
        code, _, err = run_cli(capsys, "evaluate", folder, "--methods", spec, "--out", tmp_path / "o")
        assert code == 1 and "twice" in one_line_error(err, "evaluate")
    code, _, err = run_cli(capsys, "explain", "coffee", "--compare", "ig,IG", "--out", tmp_path / "e")
    assert code == 1 and "--compare" in one_line_error(err, "explain")
    with pytest.raises(ValueError, match="no method"):
        run_settings(methods=[])


@pytest.mark.parametrize("option, value, match", [("--orders", ",", "no ROAD order"),
                                                  ("--orders", "morf,bogus", "unknown order 'bogus'"),
                                                  ("--percentages", "0", "remove nothing")])
def test_empty_orders_and_zero_percentages_are_refused_first(capsys, tmp_path, photo48, no_model_load,
                                                             option, value, match):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    code, _, err = run_cli(capsys, "evaluate", folder, option, value, "--out", tmp_path / "o")
    assert code == 1 and match in one_line_error(err, "evaluate")


def test_a_folder_of_only_unreadable_files_is_an_error(capsys, tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run_cli(capsys, "evaluate", tmp_path / "imgs", "--methods", "random", "--out",
                               tmp_path / "o", "--quiet")
    line = [x for x in err.splitlines() if x.startswith("hsets evaluate: error:")]
    assert code == 1 and line and "no image could be evaluated: 2 skipped" in line[0]


# ---- resuming with other weights ----------------------------------------------------------------
def test_resuming_with_other_weights_is_refused_naming_the_checkpoint(capsys, tmp_path, photo48):

    folder = save_photos(tmp_path / "imgs", photo48, 2)
    state = load_classifier(None).module.state_dict()
    bias = next(k for k in state if k.endswith("bias") and state[k].numel() == 1000)
    torch.save(state, tmp_path / "ck.pth")
    argv = ["evaluate", folder, "--checkpoint", tmp_path / "ck.pth", "--methods", "random", "--percentages",
            "0.5", "--curves", "none", "--out", tmp_path / "r", "--quiet"]
    code, _, err = run_cli(capsys, *argv, "--limit", "1")
    assert code == 0, err
    state[bias] = state[bias] + 0.5                 # the next epoch of fine-tuning overwrites it
    torch.save(state, tmp_path / "ck.pth")
    code, _, err = run_cli(capsys, *argv)
    line = one_line_error(err, "evaluate")
    assert code == 1 and "other model weights" in line and str(tmp_path / "ck.pth") in line
    records = [json.loads(x) for x in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 1                        # nothing of the other model was added
