"""Bad inputs and faults, second round (issue 24): wrong answers that used to be silent, results
that used to be lost, and writes that went where they should not. Each test failed on the code
before its fix."""
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from hsets_widgets.hsets.explain import Explainer, explain
from hsets_widgets.hsets.explanation import Explanation
from hsets_widgets.model.images import load_image, resize_center_crop
from hsets_widgets.model.models import ModelError, load_classifier, wrap_module
from tests.conftest import tiny_classifier
from tests.test_faults import one_line_error, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_photos(folder, photo, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((np.roll(photo, 7 * i, 1) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def explain_args(*argv):
    from hsets_widgets.cli.main import build_parser

    return build_parser().parse_args(["explain", *map(str, argv)])


# ---- 1. a photo with an EXIF rotation is explained upright ------------------------------------
def test_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10, :, 0] = 255                           # a red band along the top
    stored = np.rot90(upright, 1)                      # how a phone stores it: on its side
    exif = Image.Exif()
    exif[0x0112] = 6                                   # "rotate 90 degrees clockwise to view"
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.png", exif=exif)
    a = load_image(tmp_path / "phone.png")
    assert a.shape == (40, 60, 3)
    np.testing.assert_allclose(a, upright / 255.0, atol=1e-6)
    with Image.open(tmp_path / "phone.png") as im:     # a PIL image of the file likewise
        np.testing.assert_allclose(load_image(im), upright / 255.0, atol=1e-6)


# ---- 2. --checkpoint with the default model is used, or refused, never ignored ----------------
@pytest.mark.parametrize("command", ["explain", "evaluate", "sweep"])
def test_missing_checkpoint_with_the_default_model_is_refused(capsys, tmp_path, command):
    extra = ["--mu", "8"] if command == "sweep" else []
    code, _, err = run_cli(capsys, command, "coffee" if command != "evaluate" else tmp_path,
                           "--checkpoint", tmp_path / "nope.pth", "--out", tmp_path / "o", *extra)
    assert code == 1 and "checkpoint not found" in one_line_error(err, command)


def test_checkpoint_is_loaded_into_the_default_model(tmp_path):
    stock = load_classifier(None)
    state = stock.module.state_dict()
    bias = next(k for k in state if k.endswith("bias") and state[k].numel() == 1000)
    state[bias] = state[bias] + 3.0
    torch.save(state, tmp_path / "tuned.pth")
    tuned = load_classifier(None, checkpoint=tmp_path / "tuned.pth")
    assert torch.equal(tuned.module.state_dict()[bias], state[bias])
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ModelError, match="does not fit.*--model"):
        load_classifier(None, checkpoint=tmp_path / "other.pth")
    with pytest.raises(ModelError, match="checkpoint"):
        load_classifier(nn.Linear(2, 2), checkpoint=tmp_path / "other.pth")


# ---- 3. HSETS_OFFLINE forbids every download --------------------------------------------------
@pytest.fixture
def offline(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("a download was attempted while HSETS_OFFLINE is set")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("HSETS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))   # nothing cached there


def test_offline_torchvision_weights_are_not_downloaded(capsys, tmp_path, offline):
    code, _, err = run_cli(capsys, "explain", "coffee", "--model", "resnet18", "--out", tmp_path / "o")
    line = one_line_error(err, "explain")
    assert code == 1 and "downloads are off" in line and "--checkpoint" in line


def test_offline_imagenette_is_not_downloaded(capsys, tmp_path, offline):
    code, _, err = run_cli(capsys, "evaluate", "--imagenette", tmp_path / "data", "--out", tmp_path / "o",
                           "--methods", "random")
    assert code == 1 and "downloads are off" in one_line_error(err, "evaluate")


# ---- 4. a model that gives NaN or infinite scores is refused at once ----------------------------
class Poisoned(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.value = value

    def forward(self, x):
        out = self.lin(x.mean((2, 3)))
        return out + torch.tensor([0.0, self.value, 0.0, 0.0])


@pytest.mark.parametrize("value, says", [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_non_finite_scores_are_refused_before_the_work(photo48, value, says):
    clf = wrap_module(Poisoned(value), normalize=lambda x: x, input_size=48)
    with pytest.raises(ModelError, match=says) as err:
        explain(photo48, clf, segmenter="slic", n_steps=4, nu=4, n_sets=1)
    assert "score" not in str(err.value).split("model")[0]


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


# ---- 5. the output folder of explain is replaced as a unit; SIGTERM is an interruption -----------
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


def test_sigterm_stops_like_ctrl_c_and_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explain", "coffee", "--segmenter",
                             "slic", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the signal arrives once the work has begun: the first progress bar (no fixed sleep)
    seen, deadline = b"", time.monotonic() + 120
    while b"integrated gradients" not in seen and time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stderr], [], [], 1.0)[0]:
            seen += os.read(proc.stderr.fileno(), 4096)
    assert b"integrated gradients" in seen, seen.decode(errors="replace")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = err.decode(errors="replace").replace("\r", "\n")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated", err
    assert not out.exists()


def test_sigterm_during_a_commit_waits_for_it(tmp_path):
    from hsets_widgets.plumbing.signals import Terminated, signals_deferred, terminate_as_interrupt

    done = []
    with pytest.raises(Terminated), terminate_as_interrupt():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("commit finished")
        done.append("after")
    assert done == ["commit finished"]


# ---- 6. --limit below 1 is refused, and never empties metrics.json ------------------------------
@pytest.mark.parametrize("limit", ["-1", "0", "1.5"])
def test_limit_must_be_at_least_one(capsys, tmp_path, photo48, limit):
    save_photos(tmp_path / "in", photo48)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text('{"n_images": 2}')
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "in", "--out", tmp_path / "o", "--limit", limit,
                           "--methods", "random")
    assert code == 1 and "--limit" in one_line_error(err, "evaluate")
    assert (tmp_path / "o" / "metrics.json").read_text() == '{"n_images": 2}'


def test_limit_in_python_is_checked_too(tmp_path, photo48, small32):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    items = collect_images([save_photos(tmp_path / "in", photo48)])
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="limit"):
            run_evaluation(items, small32, tmp_path / "o", methods=["random"], limit=bad)


# ---- 7. two evaluations into one folder: the second refuses ------------------------------------
class Gate(nn.Module):
    """A tiny classifier that waits at its second forward pass until it is let go."""

    def __init__(self):
        super().__init__()
        self.net = tiny_classifier(torch.float32, size=48, width=6).module
        self.entered, self.release, self.calls = threading.Event(), threading.Event(), 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            self.entered.set()
            self.release.wait(60)
        return self.net(x)


def test_a_second_evaluation_of_the_same_folder_is_refused(tmp_path, photo48):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    items = collect_images([save_photos(tmp_path / "in", photo48)])
    gate = Gate()
    first_clf = wrap_module(gate, normalize=lambda x: x, input_size=48, class_names=list("abcde"))
    results = {}
    first = threading.Thread(target=lambda: results.setdefault(
        "first", run_evaluation(items, first_clf, tmp_path / "o", methods=["random"], percentages=[0.5],
                                curves=[])))
    first.start()
    try:
        assert gate.entered.wait(60)
        with pytest.raises(RuntimeError, match="another evaluation is writing to .*o.*wait for it"):
            run_evaluation(items, tiny_classifier(torch.float32, size=48, width=6), tmp_path / "o",
                           methods=["random"], percentages=[0.5], curves=[])
    finally:
        gate.release.set()
        first.join(60)
    assert results["first"]["n_images"] == 2
    lines = (tmp_path / "o" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2
    again = run_evaluation(items, first_clf, tmp_path / "o", methods=["random"], percentages=[0.5], curves=[])
    assert again["n_resumed"] == 2                     # the lock went with the first run


# ---- 8. an --out inside the input folder is not evaluated as photos ------------------------------
def test_out_inside_the_input_folder_is_not_read_as_input(tmp_path, photo48, small32):
    from hsets_widgets.runs.datasets import collect_images
    from hsets_widgets.runs.runner import run_evaluation

    folder = save_photos(tmp_path / "photos", photo48)
    out = folder / "eval"
    first = run_evaluation(collect_images([folder]), small32, out, methods=["random"], percentages=[0.5])
    assert any(out.glob("*.png"))                      # plots that a rescan would find
    second = run_evaluation(collect_images([folder]), small32, out, methods=["random"], percentages=[0.5])
    assert first["n_images"] == second["n_images"] == 2 and second["n_skipped"] == 0
    assert second["methods"] == first["methods"]


# ---- 9. and every other number option is checked in one place ------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["--noise", "-5"], "--noise"), (["--noise", "nan"], "--noise"), (["--batch-size", "0"], "--batch-size"),
    (["--match-support", "abc"], "--match-support"), (["--match-support", "2"], "--match-support"),
    (["--percentages", "-0.2"], "--percentages"), (["--seed", "x"], "--seed"),
    (["--workers", "0"], "--workers"), (["--max-attempts", "0"], "--max-attempts"),
])
def test_bad_evaluate_numbers_fail_in_one_line_naming_the_option(capsys, tmp_path, photo48, argv, says):
    save_photos(tmp_path / "in", photo48, 1)
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "in", "--out", tmp_path / "o", "--methods", "random",
                           *argv)
    assert code == 1 and says in one_line_error(err, "evaluate")
    assert not (tmp_path / "o").exists()


def test_noise_is_checked_in_python_too():
    from hsets_widgets.runs.runner import run_settings

    for bad in (-5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise"):
            run_settings(methods=["random"], noise=bad)


# ---- 10. the Export panel writes inside the working folder, through files.py ---------------------
def test_export_panel_stays_in_the_working_folder(tmp_path, monkeypatch, small32, photo48):
    from hsets_widgets.widgets import ExplorerState
    from hsets_widgets.widgets.export import ExportPanel

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ex = Explainer(photo48, small32, segmenter="slic", n_steps=4, nu=8, n_sets=1)
    panel = ExportPanel(ExplorerState(ex, background=False))
    panel.folder.value = str(tmp_path / "elsewhere")
    panel.png_button._handle_custom_msg({"event": "click"}, [])
    assert "outside the working folder" in panel.result.value
    assert not (tmp_path / "elsewhere").exists()
    panel.folder.value = "../elsewhere"
    panel.npz_button._handle_custom_msg({"event": "click"}, [])
    assert "outside the working folder" in panel.result.value and not (tmp_path / "elsewhere").exists()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (work / "exports").mkdir()
    (work / "exports" / "hsets-view.png").symlink_to(victim)
    panel.folder.value = "exports"
    panel.png_button._handle_custom_msg({"event": "click"}, [])
    assert victim.read_text() == "precious"
    panel.folder.value = "exports"
    (work / "exports" / "hsets-figure.png").symlink_to(victim)
    panel.fig_button._handle_custom_msg({"event": "click"}, [])
    assert victim.read_text() == "precious"
    # exports never overwrite: the links stay links, the files land beside them
    assert (work / "exports" / "hsets-view.png").is_symlink()
    assert Image.open(work / "exports" / "hsets-view-2.png").size[0] > 0


# ---- 11. a model put back into training mode is refused, and left unchanged ----------------------
def test_model_back_in_training_mode_is_refused_unchanged(photo48):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    clf = wrap_module(net, normalize=lambda x: x, input_size=48)
    net.train()
    stats = net[1].running_mean.clone()
    with pytest.raises(ModelError, match=r"training mode.*\.eval\(\)"):
        explain(photo48, clf, segmenter="slic", n_steps=4, nu=4, n_sets=1)
    assert torch.equal(net[1].running_mean, stats) and net[1].num_batches_tracked == 0


# ---- 12. an explanation file with impossible members or shapes is refused ------------------------
@pytest.fixture(scope="module")
def saved_explanation(tmp_path_factory):
    photo = resize_center_crop(load_image("chelsea"), 48)
    e = explain(photo, tiny_classifier(torch.float32, size=48, width=6), segmenter="slic", n_steps=4, nu=6,
                n_sets=1, n_samples=8)
    return e.save(tmp_path_factory.mktemp("expl") / "e.npz")


def rewrite(path, tmp_path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


@pytest.mark.parametrize("change, says", [
    (lambda a: {"set0_members": a["set0_members"] - 10_000}, "members"),
    (lambda a: {"set0_members": a["set0_members"].astype(np.float64) + 0.5}, "members"),
    (lambda a: {"set0_members": a["set0_members"] + 48 * 48}, "members"),
    (lambda a: {"heatmap": np.zeros((10, 10), np.float32)}, "heatmap"),
    (lambda a: {"labels": np.zeros((48, 47), np.int32)}, "labels"),
    (lambda a: {"ig": np.zeros((3, 10, 10), np.float32)}, "ig"),
    (lambda a: {"set0_step_added": a["set0_step_added"] - 10_000}, "step"),
])
def test_explanation_files_with_impossible_contents_are_refused(saved_explanation, tmp_path, change, says):
    with np.load(saved_explanation) as z:
        arrays = {k: z[k] for k in z.files}
    bad = rewrite(saved_explanation, tmp_path, **change(arrays))
    with pytest.raises(ValueError, match=f"damaged H-Sets explanation file.*{says}"):
        Explanation.load(bad)
    assert Explanation.load(saved_explanation).sets[0].members.min() >= 0


# ---- the unclear or late classes ----------------------------------------------------------------
@pytest.mark.parametrize("device, says", [("cuda:99", "--device cpu"), ("bogus", "unknown device")])
def test_a_device_this_machine_lacks_is_one_line_before_the_model(capsys, tmp_path, device, says):
    code, _, err = run_cli(capsys, "explain", "coffee", "--device", device, "--out", tmp_path / "o" / "deeper")
    assert code == 1 and says in one_line_error(err, "explain")
    assert not (tmp_path / "o").exists()              # an early failure leaves no empty folder behind
    with pytest.raises(ModelError, match=says.replace("--device ", "")):
        load_classifier(tiny_classifier(), device=device)


def test_a_symlink_loop_is_called_a_loop_not_missing(tmp_path):
    from hsets_widgets.model.images import ImageError
    from hsets_widgets.model.models import load_checkpoint
    from hsets_widgets.runs.datasets import collect_images

    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(ImageError, match="symbolic link loop"):
        load_image(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="symbolic link loop"):
        collect_images([tmp_path / "a.png"])
    with pytest.raises(ModelError, match="symbolic link loop"):
        load_checkpoint(nn.Linear(2, 2), tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="symbolic link loop"):
        Explanation.load(tmp_path / "a.png")
    (tmp_path / "c.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="broken symbolic link"):
        load_image(tmp_path / "c.png")


def test_numbers_in_exponent_form_are_read_and_bad_ones_name_their_option(capsys, tmp_path):
    from hsets_widgets.plumbing.options import parse_assignments

    args = explain_args("coffee", "--nu", "1e3", "--n-samples", "2e2")
    assert (args.nu, args.n_samples) == (1000, 200)
    assert parse_assignments(["nu=1e3", "mu=1e-3"]) == {"nu": 1000, "mu": 0.001}
    for argv, option in ((["sweep", "coffee", "--mu", "abc"], "--mu"), (["explain", "coffee", "--nu", "0.5"], "--nu"),
                         (["evaluate", tmp_path, "--limit", "x"], "--limit")):
        code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "o")
        assert code == 1 and f"argument {option}" in one_line_error(err, argv[0])


def test_class_folders_the_model_cannot_predict_get_no_label(tmp_path, photo48):
    from hsets_widgets.runs.datasets import collect_images

    for name in ("3", "7", "²", "-1"):
        save_photos(tmp_path / name, photo48, 1)
    with pytest.warns(UserWarning, match="model has 5 classes"):
        items = collect_images([tmp_path], class_names=list("abcde"))
    labels = {i.path.parent.name: i.label for i in items}
    assert labels == {"3": 3, "7": None, "²": None, "-1": None}


def test_a_panorama_says_that_only_its_centre_is_explained():
    with pytest.warns(UserWarning, match=r"centre \d+% of this 400x40 image"):
        resize_center_crop(np.zeros((40, 400, 3), np.float32), 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resize_center_crop(np.zeros((300, 400, 3), np.float32), 32)     # an ordinary photo: quiet


def test_repeated_sweep_points_are_computed_once(capsys):
    from hsets_widgets.cli.sweep import distinct

    assert distinct([8.0, 16.0, 8.0], "--mu") == [8.0, 16.0]
    assert "--mu lists a value twice" in capsys.readouterr().err


def test_explore_refuses_an_unreadable_image_before_serving(tmp_path):
    from hsets_widgets.cli.explore import resolve_image
    from hsets_widgets.model.images import ImageError

    (tmp_path / "photo.jpg").write_text("not a photo")
    with pytest.raises(ImageError, match="cannot read"):
        resolve_image(str(tmp_path / "photo.jpg"))


def test_outputs_follow_the_umask(tmp_path, photo48, small32):
    from hsets_widgets.cli.explain import explain_to_folder
    from hsets_widgets.plumbing.files import write_json

    old = os.umask(0o022)
    try:
        assert os.stat(write_json(tmp_path / "a.json", {})).st_mode & 0o777 == 0o644
        explain_to_folder(photo48, small32, explain_args("x", "--out", tmp_path / "o", "--segmenter", "slic",
                                                         "--n-steps", 4, "--nu", 4, "--n-sets", 1, "--quiet"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "o").st_mode & 0o777 == 0o755
    assert {os.stat(p).st_mode & 0o777 for p in (tmp_path / "o").iterdir()} == {0o644}


def test_every_listed_example_photo_loads():
    from hsets_widgets.model.images import EXAMPLES

    for name in EXAMPLES:
        a = load_image(name)
        assert a.ndim == 3 and a.shape[2] == 3 and min(a.shape[:2]) >= 224, name


def test_stop_process_ends_a_child_that_ignores_sigterm():
    """The servers of `hsets explore`, the browser tests and the benchmarks are stopped this way: a
    child that ignores SIGTERM is killed after the timeout, and an ended one is left alone."""
    import subprocess
    import sys

    from hsets_widgets.plumbing.signals import stop_process

    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "up"
    stop_process(stubborn, timeout=1)
    assert stubborn.wait(timeout=10) == -9
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(polite, timeout=10)
    assert polite.wait(timeout=10) == -15
    stop_process(polite, timeout=10)          # already ended: nothing to do, no error
