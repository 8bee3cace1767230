"""`hsets evaluate` shows each method's progress within a photo, by name and with the time left
(issue 31, goal 7): with eight methods on two photos the bar stood at "0/2" for ten minutes."""
import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from hsets_widgets.runs.datasets import ImageItem
from hsets_widgets.runs.runner import run_evaluation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photos(folder, photo48, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((np.roll(photo48, 5 * i, 0) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return [ImageItem(folder / f"p{i}.png") for i in range(n)]


def test_progress_names_each_method_within_a_photo(tmp_path, photo48, small32):
    calls = []
    items = photos(tmp_path / "imgs", photo48)
    run_evaluation(items, small32, tmp_path / "r", methods=["random", "ig:n_steps=4", "caso:n_iter=2"],
                   percentages=[0.5], curves=[], progress=lambda *c: calls.append(c))
    first_image_done = calls.index(("evaluate", 1, 2))
    within = calls[:first_image_done]
    assert ("methods", 0, 3) in within and ("methods", 3, 3) in within
    named = {stage.rsplit(": ", 1)[0] for stage, _, _ in within if ": " in stage}
    assert {"ig:n_steps=4", "caso:n_iter=2"} <= named               # the methods' own stages, by name
    # every stage a method opened is closed by the time it ends
    last = {}
    for stage, done, total in calls:
        last[stage] = (done, total)
    assert all(done >= total for done, total in last.values()), last


def test_the_cli_bar_shows_the_method_and_the_time_left(capsys, tmp_path, photo48):
    folder = tmp_path / "imgs"
    photos(folder, photo48, 1)
    argv = ["evaluate", folder, "--methods", "random,ig:n_steps=4", "--percentages", "0.5", "--curves", "none"]
    code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "r")
    assert code == 0, err
    assert "ig:n_steps=4: integrated gradients" in err and "methods" in err
    assert "<" in err.split("ig:n_steps=4: integrated gradients")[1].splitlines()[0].split("\r")[0]      # tqdm's [elapsed<left]
    code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "q", "--quiet")
    assert code == 0 and "ig:n_steps=4: integrated gradients" not in err and "methods" not in err.split("images evaluated")[0]
