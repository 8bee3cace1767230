"""Bad inputs and faults, third round (issue 33): wrong answers that used to be silent, errors
that came after minutes of work or as tracebacks, and a token any local user could read. Each
test failed on the code before its fix."""
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hsets_widgets.methods.registry import METHODS, attribute, get_method, get_methods
from hsets_widgets.runs.datasets import ImageItem
from hsets_widgets.runs.runner import run_evaluation, run_settings
from tests.conftest import tiny_classifier
from tests.test_faults import one_line_error, run_cli
from tests.test_faults_round2 import save_photos

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if any command loads a model: the error must come before it."""
    import hsets_widgets.model.models as models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad setting was refused")

    monkeypatch.setattr(models, "load_classifier", refuse)


# ---- BAD 4: method options, one schema, checked before the model loads ------------------------
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


@pytest.mark.parametrize("spec", ["ig:bogus=1", "caso:n_iter=-1", "moxi:grid=0", "archipelago:paint=bogus"])
def test_bad_method_options_fail_before_the_model_loads(capsys, tmp_path, photo48, no_model_load, spec):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    code, _, err = run_cli(capsys, "evaluate", folder, "--methods", f"random,{spec}", "--out", tmp_path / "o")
    assert code == 1 and spec.split(":")[1].split("=")[0] in one_line_error(err, "evaluate")
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(capsys, "explain", "coffee", "--compare", spec, "--out", tmp_path / "e")
    assert code == 1 and spec.split(":")[1].split("=")[0] in one_line_error(err, "explain")


def test_every_builtin_method_declares_exactly_the_options_its_function_takes():
    import inspect

    for name, kind in METHODS.items():
        if name == "hsets":
            continue
        params = [p for p in list(inspect.signature(kind.fn).parameters)[2:]
                  if p not in ("target", "progress", "cancel")]
        assert kind.options is not None and sorted(kind.options) == sorted(params), name


def test_the_engine_refuses_caso_iterations_below_one(image8, tiny64):
    from hsets_widgets.methods.caso import caso

    for key in ("n_iter", "power_iterations"):
        with pytest.raises(ValueError, match=key):
            caso(image8, tiny64, 0, **{key: -1})


def test_valid_method_options_still_run(image8, tiny64):
    amap = attribute(image8, tiny64, "caso:n_iter=2,power_iterations=2", target=0)
    assert amap.shape[-2:] == (8, 8) and np.abs(amap).sum() > 0


# ---- BAD 5: a method listed twice, or none -----------------------------------------------------
@pytest.mark.parametrize("methods", [["random", "RANDOM"], ["ig", "ig"], ["hsets", "hsets:default"],
                                     ["random", " random"]])
def test_a_method_listed_twice_is_refused(methods):
    with pytest.raises(ValueError, match="twice"):
        get_methods(methods)


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


# ---- BAD 1: the access token of `hsets explore` is never on a command line --------------------
def descendants(pid: int) -> list:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in open(f"/proc/{p}/task/{p}/children").read().split()]
        except OSError:
            pass
    return out


def test_explore_token_is_not_on_any_command_line(tmp_path):
    pytest.importorskip("voila")
    import socket
    import stat

    from tests.test_widgets_cli import fetch_without_redirect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1", JUPYTER_TOKEN="inherited-from-the-user")
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explore", "--no-browser",
                             "--no-preheat", "--port", str(port), "--segmenter", "slic"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = proc.stdout.readline()
        token = first.split("?token=")[1].split()[0]
        seen = [first]
        while not any("running at" in line for line in seen[-3:]):   # Voila says when it listens
            line = proc.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        pids = descendants(proc.pid)
        assert len(pids) >= 2, "no Voila process found"
        for pid in pids:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            assert token not in cmdline, cmdline
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert token not in ps
        # the server got it from a file only this user can read, in a private folder
        environ = dict(kv.split("=", 1) for kv in
                       open(f"/proc/{pids[1]}/environ", "rb").read().decode().split("\0") if "=" in kv)
        path = environ["JUPYTER_TOKEN_FILE"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert "JUPYTER_TOKEN" not in environ
        # and the server still needs it (the user's JUPYTER_TOKEN does not open it)
        for query in ("", "?token=inherited-from-the-user"):
            status, location = fetch_without_redirect(f"http://127.0.0.1:{port}/{query}")
            assert status == 302 and "login" in location, (status, location)
        status, _ = fetch_without_redirect(f"http://127.0.0.1:{port}/?token={token}")
        assert status == 200
        proc.terminate()
        assert proc.wait(timeout=60) == 0
        assert not os.path.exists(path)          # the token file goes with the server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- BAD 3: the Explorer's "Load a photo" reads a file as the command line does ----------------
def upload(explorer, path):
    import datetime

    data = path.read_bytes()
    explorer.chooser.upload.value = ({"name": path.name, "type": "image/png", "size": len(data),
                                      "content": memoryview(data),
                                      "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def test_an_uploaded_photo_is_the_picture_the_cli_explains(tmp_path):
    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.widgets import Explorer

    gray = np.tile(np.linspace(0, 1, 40), (40, 1))
    Image.fromarray((gray * 65535).astype(np.uint16)).save(tmp_path / "g16.png")     # 16-bit grayscale
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 255                                     # red pixels, hidden behind alpha 0 on the left
    rgba[:, 20:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    clf = tiny_classifier(torch.float32, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Explorer(Explainer(tmp_path / "g16.png", clf, segmenter="slic"), autostart=False, readout=False,
                     background=False)
        for name in ("g16.png", "rgba.png"):
            cli = Explainer(tmp_path / name, clf, segmenter="slic").image     # what `hsets explain` sees
            upload(e, tmp_path / name)
            assert e.state.error == "" and "color:#c62828" not in e.chooser.message.value
            np.testing.assert_allclose(e.explainer.image, cli, atol=1e-6)
    left = e.explainer.image[:, :14]
    assert np.allclose(left, 1.0, atol=1e-3)              # composited on white, as load_image does
    e.state.cancel()


def test_load_image_reads_bytes_as_it_reads_the_file(tmp_path):
    from hsets_widgets.model.images import ImageError, load_image, load_image_bytes

    gray = (np.tile(np.linspace(0, 1, 32), (32, 1)) * 65535).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = load_image_bytes((tmp_path / "g16.png").read_bytes())
        np.testing.assert_array_equal(a, load_image(tmp_path / "g16.png"))
    assert 0.45 < a.mean() < 0.55                          # not all white
    with pytest.raises(ImageError, match="cannot read notes.txt as an image"):
        load_image_bytes(b"hello", "notes.txt")


# ---- BAD 2: the weights and the photos of an evaluation folder are fingerprinted --------------
FAST = dict(methods=["random"], percentages=[0.5], curves=[])


def test_resuming_with_other_weights_is_refused_naming_the_checkpoint(capsys, tmp_path, photo48):
    from hsets_widgets.model.models import load_classifier

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


def test_resuming_with_other_weights_in_python(tmp_path, photo48, small32):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    items = [ImageItem(folder / "p0.png")]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    with torch.no_grad():
        small32.module.head.bias += 1.0
    with pytest.raises(ValueError, match="other model weights.*model tiny"):
        run_evaluation(items, small32, tmp_path / "r", **FAST)
    # a folder written before weights were fingerprinted is accepted once, and fingerprinted
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    del cfg["weights"]
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    assert run_evaluation(items, small32, tmp_path / "r", **FAST)["n_resumed"] == 1
    assert "weights" in json.loads((tmp_path / "r" / "config.json").read_text())


def test_a_photo_edited_in_place_is_evaluated_again(tmp_path, photo48, small32):
    from hsets_widgets.runs.store import read_results

    folder = save_photos(tmp_path / "imgs", photo48, 2)
    items = [ImageItem(folder / f"p{i}.png") for i in range(2)]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    edited = np.ascontiguousarray(photo48[::-1])     # the same file name, other pixels
    Image.fromarray((edited * 255).astype(np.uint8)).save(folder / "p0.png")
    with pytest.warns(UserWarning, match=r"p0\.png changed since it was evaluated"):
        m = run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert (m["n_computed"], m["n_resumed"]) == (1, 1)
    done = read_results(tmp_path / "r" / "results.jsonl")
    import hashlib

    assert done[items[0].key]["file"]["sha256"] == hashlib.sha256((folder / "p0.png").read_bytes()).hexdigest()
    os.utime(folder / "p1.png")                      # touched, not changed: still resumed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert (m["n_computed"], m["n_resumed"]) == (0, 2)


# ---- BAD 6: a damaged middle line of results.jsonl is skipped, naming the file and line -------
DAMAGED = [b"null", b"[1, 2]", b'{"status": "ok"}', b'{"status": "ok", "key": "k", "slug": "s", "path": "p", '
           b'"target": 1}', b"\xff\xfe not utf-8", b'{"status": "ok", "ke', b"\x00\x00\x00\x00", b"7",
           b"[" * 100000]


@pytest.mark.parametrize("bad", DAMAGED, ids=range(len(DAMAGED)))
def test_a_damaged_middle_line_is_skipped_and_the_folder_resumes(tmp_path, photo48, small32, bad):
    folder = save_photos(tmp_path / "imgs", photo48, 2)
    items = [ImageItem(folder / f"p{i}.png") for i in range(2)]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    path = tmp_path / "r" / "results.jsonl"
    first, second = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(first + bad + b"\n" + second)
    with pytest.warns(UserWarning, match=r"results\.jsonl, line 2: skipped a damaged record"):
        m = run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert (m["n_resumed"], m["n_computed"]) == (2, 0)


# ---- BAD 7: a bad memory budget is one line, before the model loads or a server starts --------
@pytest.fixture
def no_server(monkeypatch):
    from hsets_widgets.cli import explore

    def refuse(*a, **k):
        raise AssertionError("a server was started before the bad setting was refused")

    monkeypatch.setattr(explore.subprocess, "Popen", refuse)


@pytest.mark.parametrize("command", ["explain", "evaluate", "explore"])
def test_a_bad_memory_budget_is_refused_first(capsys, tmp_path, photo48, monkeypatch, no_model_load, no_server,
                                              command):
    target = [save_photos(tmp_path / "imgs", photo48, 1)] if command == "evaluate" else ["coffee"]
    extra = ["--no-browser"] if command == "explore" else ["--out", tmp_path / "o"]
    if command != "evaluate":             # (evaluate has no --set: its methods take H-Sets settings)
        code, _, err = run_cli(capsys, command, *target, *extra, "--set", "memory_budget=inf")
        assert code == 1 and "memory_budget" in one_line_error(err, command)
    else:
        code, _, err = run_cli(capsys, command, *target, *extra, "--methods", "hsets:memory_budget=inf")
        assert code == 1 and "memory_budget" in one_line_error(err, command)
    monkeypatch.setenv("HSETS_MEMORY_BUDGET", "abc")
    code, _, err = run_cli(capsys, command, *target, *extra)
    line = one_line_error(err, command)
    assert code == 1 and "HSETS_MEMORY_BUDGET='abc'" in line and "1.5G" in line


def test_parse_bytes_refuses_infinity():
    from hsets_widgets.plumbing.memory import parse_bytes

    with pytest.raises(ValueError, match="finite"):         # was an OverflowError traceback
        parse_bytes(float("inf"))


# ---- POOR: settings refused before the work, never silently dropped ----------------------------
@pytest.mark.parametrize("command", ["explain", "sweep", "explore"])
def test_an_unknown_segmenter_is_refused_when_the_command_line_is_read(capsys, no_model_load, no_server, command):
    extra = ["--mu", "8"] if command == "sweep" else []
    code, _, err = run_cli(capsys, command, "coffee", "--segmenter", "bogus", *extra)
    assert code == 1 and "unknown segmenter 'bogus'" in one_line_error(err, command)


def test_a_setting_given_twice_is_refused_not_dropped(capsys, tmp_path, no_model_load):
    code, _, err = run_cli(capsys, "explain", "coffee", "--nu", "16", "--set", "nu=0", "--out", tmp_path / "o")
    assert code == 1 and "--nu 16 and --set nu=0" in one_line_error(err, "explain")


def test_explore_checks_its_settings_against_its_preset(capsys, no_server):
    code, _, err = run_cli(capsys, "explore", "--no-browser", "--preset", "paper", "--set", "fresh=true")
    assert code == 1 and "fresh" in one_line_error(err, "explore")


# ---- BAD 9: the interaction test and Explanation.load refuse what does not fit the image ------
@pytest.fixture
def test_inputs(small32, photo48):
    x = torch.from_numpy(photo48.transpose(2, 0, 1).copy())
    labels = np.zeros((48, 48), np.int64)
    labels[:, 24:] = 1
    return x, small32, np.arange(100, 140), (2, 10), labels


@pytest.mark.parametrize("change, match", [
    (dict(pixels=np.array([-1, 5, 6])), "pixels lie in"),
    (dict(pixels=np.array([5, 48 * 48])), "pixels lie in"),
    (dict(seed_yx=(-1, 3)), "seed_yx"),
    (dict(seed_yx=(3, 48)), "seed_yx"),
    (dict(target=-1), "target"),
    (dict(target=5), "target"),
    (dict(x="x255"), r"\[0, 1\]"),
    (dict(labels=np.zeros((10, 10), np.int64)), "labels have shape"),
    (dict(seed=-3), "seed must be"),
])
def test_interaction_test_refuses_inputs_outside_the_image(test_inputs, change, match):
    from hsets_widgets.metrics.interactions import interaction_test

    x, clf, pixels, seed_yx, labels = test_inputs
    args = dict(x=x, classifier=clf, target=0, pixels=pixels, seed_yx=seed_yx, labels=labels, seed=0)
    if change.get("x") == "x255":
        change = dict(x=x * 255)
    args.update(change)
    seed = args.pop("seed")
    with pytest.raises(ValueError, match=match):
        interaction_test(args.pop("x"), args.pop("classifier"), args.pop("target"), args.pop("pixels"),
                         args.pop("seed_yx"), args.pop("labels"), seed=seed, n_parts=2)


def saved_explanation(tmp_path):
    from hsets_widgets.hsets.explanation import Explanation, InteractionSet
    from hsets_widgets.hsets.growth import GrowthStep

    rng = np.random.default_rng(0)
    h = w = 8
    members = np.array([9, 10, 17, 18], np.int64)
    s = InteractionSet(seed=9, seed_yx=(1, 1), segment=0, members=members, value=1.0, stderr=0.0,
                       value_kind="mean", signed_score=0.0, log2_total=2.0, exact=True, n_samples=0,
                       steps=[GrowthStep(9, [10, 17, 18])], samples=np.zeros(0), banzhaf=np.zeros(4),
                       shares=np.zeros(4))
    e = Explanation(image=rng.random((h, w, 3)).astype(np.float32), target=3, class_name="c3", probability=0.5,
                    sets=[s], heatmap=rng.random((h, w)).astype(np.float32),
                    ig=rng.random((3, h, w)).astype(np.float32), labels=np.zeros((h, w), np.int32),
                    features="pixel", settings={"preset": "default"}, timings={}, info={})
    path = e.save(tmp_path / "e.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    return arrays, meta


def write_edited(tmp_path, arrays, meta):
    arrays = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    np.savez(tmp_path / "edited.npz", **arrays)
    return tmp_path / "edited.npz"


@pytest.mark.parametrize("edit, match", [
    (lambda a, m: m["sets"][0].update(seed_yx=[8, 1]), "seed pixel"),
    (lambda a, m: m["sets"][0].update(seed_yx=[-1, 1]), "seed pixel"),
    (lambda a, m: a.update(image=np.full((8, 8, 3), np.nan, np.float32)), "image holds"),
    (lambda a, m: a.update(labels=np.full((8, 8), np.nan)), "labels"),
    (lambda a, m: m.update(target=-3), "target"),
    (lambda a, m: m.update(probability=7.5), "probability"),
    (lambda a, m: a.update(set0_members=np.array([9, 9, 9, 9], np.int64)), "twice"),
    (lambda a, m: a.update(heatmap=np.full((8, 8), "x")), "heatmap holds"),
])
def test_explanation_load_refuses_damage_naming_the_field(tmp_path, edit, match):
    from hsets_widgets.hsets.explanation import Explanation

    arrays, meta = saved_explanation(tmp_path)
    Explanation.load(write_edited(tmp_path, arrays, meta))        # the unedited file loads
    edit(arrays, meta)
    with pytest.raises(ValueError, match=match):
        Explanation.load(write_edited(tmp_path, arrays, meta))


def test_explanation_load_refuses_a_huge_declared_array_and_deep_json(tmp_path):
    import zipfile

    from hsets_widgets.hsets.explanation import Explanation

    arrays, meta = saved_explanation(tmp_path)
    path = write_edited(tmp_path, {k: v for k, v in arrays.items() if k != "set0_members"}, meta)
    header = {"descr": "<i8", "fortran_order": False, "shape": (2 ** 40,)}     # a member of 8 TiB
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("set0_members.npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(ValueError, match="declares"):
        Explanation.load(path)
    deep = dict(arrays, meta=np.frombuffer(b"[" * 100000 + b"]" * 100000, np.uint8))
    np.savez(tmp_path / "deep.npz", **deep)
    with pytest.raises(ValueError, match="not an H-Sets explanation file"):
        Explanation.load(tmp_path / "deep.npz")


# ---- BAD 8: matched-support sparsity over one basis after a stopped run and other methods ----
def sparse(x, classifier, target=None):
    """A map with 10 pixels of support (matched support 10 wherever it takes part)."""
    m = np.zeros(tuple(x.shape[-2:]))
    m.flat[:10] = np.arange(1, 11)
    return m


def test_matched_support_is_over_this_runs_methods_on_every_image(tmp_path, photo48, small32):
    from hsets_widgets.metrics.sparsity import pixel_map, support_size
    from hsets_widgets.runs.store import read_results

    folder = save_photos(tmp_path / "imgs", photo48, 3)
    items = [ImageItem(folder / f"p{i}.png") for i in range(3)]
    one = dict(percentages=[0.5], curves=[])
    run_evaluation(items[:1], small32, tmp_path / "r", methods=["random", sparse], **one)   # then stopped
    m = run_evaluation(items, small32, tmp_path / "r", methods=["random", "gradient"], **one)
    done = read_results(tmp_path / "r" / "results.jsonl")
    full = [support_size(pixel_map(np.asarray(photo48)[..., 0] + 1))] * 3        # all 48 x 48 pixels
    assert [done[i.key]["methods"]["gradient"]["matched_support"] for i in items] == full
    assert m["methods"]["random"]["matched_support"]["mean"] == full[0]
    # a resumed record matched over other methods is matched again for the summary
    m = run_evaluation(items[:1], small32, tmp_path / "r", methods=["random", sparse], **one)
    assert m["methods"]["random"]["matched_support"]["mean"] == 10
    m = run_evaluation(items, small32, tmp_path / "r", methods=["random", "gradient"], **one)
    assert m["n_resumed"] == 3 and m["methods"]["random"]["matched_support"]["mean"] == full[0]


# ---- POOR: evaluation settings and folders -----------------------------------------------------
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


def test_a_read_only_metrics_file_is_not_replaced(capsys, tmp_path, photo48, small32):
    folder = save_photos(tmp_path / "imgs", photo48, 1)
    items = [ImageItem(folder / "p0.png")]
    run_evaluation(items, small32, tmp_path / "r", **FAST)
    metrics = tmp_path / "r" / "metrics.json"
    before = metrics.read_text()
    metrics.chmod(0o444)
    with pytest.raises(PermissionError, match="metrics.json is read-only"):
        run_evaluation(items, small32, tmp_path / "r", **FAST)
    assert metrics.read_text() == before


def test_a_file_named_like_an_option_gets_a_hint(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-dash.jpg").write_bytes(b"x")
    code, _, err = run_cli(capsys, "explain", "-dash.jpg")
    assert code == 1 and "write ./-dash.jpg (or put -- before it)" in err


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


# ---- POOR: `kill -9` of `hsets explore` leaves no server and no folder behind ----------------
def test_kill_9_of_explore_stops_voila_and_the_next_run_removes_its_folder(tmp_path):
    pytest.importorskip("voila")
    import signal
    import socket
    import tempfile

    from hsets_widgets.cli import explore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explore", "--no-browser",
                             "--no-preheat", "--port", str(port), "--segmenter", "slic"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    voila = []
    try:
        seen = [proc.stdout.readline()]
        while "running at" not in seen[-1]:
            seen.append(proc.stdout.readline())
            assert seen[-1], "".join(seen)
        voila = descendants(proc.pid)[1:]
        sessions = [f for f in Path(tempfile.gettempdir()).glob(explore.SESSION_PREFIX + "*")
                    if (f / explore.OWNER_FILE).exists() and (f / explore.OWNER_FILE).read_text() == str(proc.pid)]
        assert len(sessions) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30           # Voila is not our child: poll its end
        while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
                  for p in voila) and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert sessions[0].exists()                    # left behind by kill -9 ...
        assert sessions[0] in explore.remove_stale_sessions()   # ... and removed by the next start
        assert not sessions[0].exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in voila:
            try:
                os.kill(p, signal.SIGTERM)
            except OSError:
                pass


def test_the_next_explain_removes_the_staging_folder_of_a_killed_run(tmp_path, photo48, small32):
    from hsets_widgets.cli.explain import STALE_STAGING_SECONDS, explain_to_folder
    from tests.test_faults_round2 import explain_args

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


def test_explore_refuses_an_unknown_model_before_the_server_starts(capsys, no_server):
    code, _, err = run_cli(capsys, "explore", "--no-browser", "--model", "bogusnet")
    assert code == 1 and "unknown model 'bogusnet'" in one_line_error(err, "explore")
