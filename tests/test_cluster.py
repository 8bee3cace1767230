"""``hsets evaluate --workers / --address``: a real Ray cluster on this machine (127.0.0.1).

The model is the real offline default (EfficientNet-Lite0, loaded by every worker); the images
are small and the methods cheap, so each cluster run takes seconds.
"""
import functools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, wait_until
from PIL import Image

# the clusters these tests start stay on the loopback interface (what hsets evaluate sets up
# before it imports Ray; here Ray is imported first, so the switch is set here)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from hsets_widgets.model.models import load_classifier  # noqa: E402
from hsets_widgets.runs.cluster import ClusterOptions, run_on_ray  # noqa: E402
from hsets_widgets.runs.datasets import collect_images  # noqa: E402
from hsets_widgets.runs.runner import run_evaluation, run_settings  # noqa: E402

METHODS = ["random", "gradient", "hsets:n_sets=1,nu=16,n_samples=20,segmenter=slic,n_steps=8"]
SETTINGS = dict(methods=METHODS, percentages=[0.1, 0.5], curves=())
LOAD = functools.partial(load_classifier, None)
CLI_ARGS = ["--methods", "random,gradient,hsets:n_sets=1+nu=16+n_samples=20+segmenter=slic+n_steps=8",
            "--percentages", "0.1", "0.5", "--curves", "none", "--quiet"]
WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916"]
HSETS = [str(Path(sys.executable).parent / "hsets")]

pytestmark = [pytest.mark.ray, pytest.mark.network]


def photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for wnid in WNIDS[:n]:
        Image.fromarray((rng.random((48, 48, 3)) * 255).astype(np.uint8)).save(folder / f"{wnid}_x.png")
    return folder


def lines(path: Path) -> list:
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


def without_times(record: dict) -> dict:
    return {**record, "methods": {m: {k: v for k, v in r.items() if "seconds" not in k}
                                  for m, r in record["methods"].items()}}


@pytest.mark.slow
def test_a_local_cluster_listens_on_loopback_only(tmp_path):
    """The cluster `hsets evaluate --workers` starts binds to 127.0.0.1, not the machine's address."""
    code = (f"import os, sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r}); "
            "from hsets_widgets.runs.cluster import ClusterOptions, connect, require_ray; "
            "ray = require_ray(None); connect(ray, ClusterOptions(workers=1, quiet=True)); "
            "print(ray.util.get_node_ip_address()); ray.shutdown()")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "127.0.0.1"


@pytest.mark.slow
def test_two_workers_give_the_records_of_one_process(tmp_path, one_torch_thread):
    folder = photos(tmp_path / "photos", 4)
    (folder / "zz_broken.JPEG").write_bytes(b"not a jpeg")          # read by the driver: skipped
    items = collect_images([folder])
    with pytest.warns(UserWarning, match="skipping"):
        single = run_evaluation(items, load_classifier(None), tmp_path / "single", **SETTINGS)
    events = []
    with pytest.warns(UserWarning, match="skipping"):
        m = run_on_ray(items, LOAD, tmp_path / "ray", run_settings(**SETTINGS),
                       ClusterOptions(workers=2, quiet=True), on_event=events.append)
    assert m["n_images"] == single["n_images"] == 4 and m["n_failed"] == 0
    assert m["n_skipped"] == single["n_skipped"] == 1
    assert m["workers"]["n"] == 2 and m["workers"]["address"] == "local"
    ours = {r["key"]: r for r in lines(tmp_path / "ray" / "results.jsonl")}
    ref = {r["key"]: r for r in lines(tmp_path / "single" / "results.jsonl")}
    assert ours.keys() == ref.keys()
    for key in ref:
        assert without_times(ours[key]) == without_times(ref[key])
    # both workers took images, and each said who it is
    assert {e.worker for e in events if e.kind == "done"} == {0, 1}
    assert len({e.pid for e in events if e.kind == "ready"}) == 2
    for name in ("metrics.json", "road_morf.png"):
        assert (tmp_path / "ray" / name).exists()
    assert not ray.is_initialized()          # the cluster it started is gone


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_image_retried(tmp_path):
    items = collect_images([photos(tmp_path / "photos", 4)])
    events, killed = [], []

    def on_event(e):
        events.append(e)
        if e.kind == "ready" and e.worker == 0 and len(events) <= 2:   # worker 0, mid first image
            def kill():
                os.kill(e.pid, signal.SIGKILL)
                killed.append(e.pid)
            threading.Timer(1.5, kill).start()

    m = run_on_ray(items, LOAD, tmp_path / "ray", run_settings(**SETTINGS), ClusterOptions(workers=2, quiet=True),
                   on_event=on_event)
    assert killed
    retries = [e for e in events if e.kind == "retry"]
    assert len(retries) == 1 and retries[0].worker == 0 and "Error" in retries[0].reason
    recs = lines(tmp_path / "ray" / "results.jsonl")
    assert sorted(r["key"] for r in recs) == sorted(i.key for i in items)   # each image once
    assert all(r["status"] == "ok" for r in recs) and m["n_failed"] == 0 and m["n_images"] == 4
    # the replaced worker (a new process) went on taking images
    later = [e for e in events if e.kind == "done" and e.worker == 0]
    assert later and all(e.pid != killed[0] for e in later)


@pytest.mark.slow
def test_an_image_whose_workers_keep_dying_is_recorded_as_failed_then_redone(tmp_path):
    items = collect_images([photos(tmp_path / "photos", 2)])
    events = []

    def on_event(e):
        events.append(e)
        if e.kind == "ready" and len(events) <= 2:     # both workers, once, mid first image
            threading.Timer(1.0, os.kill, (e.pid, signal.SIGKILL)).start()

    m = run_on_ray(items, LOAD, tmp_path / "ray", run_settings(**SETTINGS),
                   ClusterOptions(workers=2, max_attempts=1, quiet=True), on_event=on_event)
    failed = [r for r in lines(tmp_path / "ray" / "results.jsonl") if r["status"] == "failed"]
    assert m["n_failed"] == len(failed) >= 1 and m["n_images"] == 2 - len(failed)
    assert all(r["attempts"] == 1 and "Error" in r["reason"] for r in failed)
    assert {f["path"] for f in m["failed"]} == {r["path"] for r in failed}
    # failed images are not done: a rerun evaluates them and nothing else
    m2 = run_on_ray(items, LOAD, tmp_path / "ray", run_settings(**SETTINGS), ClusterOptions(workers=1, quiet=True))
    assert m2["n_images"] == 2 and m2["n_failed"] == 0 and m2["n_computed"] == len(failed)
    ok = [r for r in lines(tmp_path / "ray" / "results.jsonl") if r["status"] == "ok"]
    assert sorted(r["key"] for r in ok) == sorted(i.key for i in items)


def ray_processes() -> set:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if "raylet" in line or "gcs_server" in line}


@pytest.mark.slow
def test_killed_or_interrupted_driver_resumes_without_duplicates(tmp_path):
    folder = photos(tmp_path / "photos", 6)
    out = tmp_path / "eval"
    results = out / "results.jsonl"
    before = ray_processes()
    cmd = HSETS + ["evaluate", str(folder), "--out", str(out), "--workers", "2", *CLI_ARGS]

    def n_lines():
        return len(lines(results)) if results.exists() else 0

    # 1. killed outright (SIGKILL) once the first image is written
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: n_lines() >= 1 or p.poll() is not None, 180, "a first record")
    p.kill()
    p.wait()
    first = n_lines()
    assert 1 <= first < 6
    # 2. interrupted (Ctrl-C) once it has written one more
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: n_lines() > first or p.poll() is not None, 180, "a resumed record")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    if n_lines() < 6:
        assert p.returncode == 130 and "interrupted" in err
    wait_until(lambda: ray_processes() <= before, 30, "the interrupted run's cluster to stop")
    # 3. the rest; every image exactly once, every line whole
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    recs = lines(results)
    assert len(recs) == 6 and len({r["key"] for r in recs}) == 6
    assert all(r["status"] == "ok" for r in recs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 6 and metrics["n_resumed"] >= 2
    assert f"{metrics['n_resumed']} resumed" in done.stderr


@pytest.fixture
def head_node(tmp_path):
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = free_port()
    started = subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1",
                              "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                              "--disable-usage-stats"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)


@pytest.mark.slow
def test_address_joins_a_cluster_started_with_ray_start(tmp_path, head_node):
    """The paper's protocol (correctly classified images only) on a cluster the user started."""
    import torch

    from hsets_widgets.runs.datasets import imagenet_wnids, load_item

    folder = photos(tmp_path / "photos", 3)
    clf, wnids = load_classifier(None), imagenet_wnids()
    for k, p in enumerate(sorted(folder.iterdir())):      # two named as predicted, one wrongly
        with torch.no_grad():
            pred = int(clf(load_item(collect_images([p])[0], 224).unsqueeze(0)).argmax())
        p.rename(folder / f"{wnids[pred if k < 2 else (pred + 1) % 1000]}_{k}.png")
    out = tmp_path / "eval"
    run = subprocess.run(HSETS + ["evaluate", str(folder), "--out", str(out), "--address", head_node,
                                  "--correct-only", *CLI_ARGS], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 2 and metrics["workers"]["address"] == head_node
    assert metrics["n_skipped"] == 1 and "misclassified" in metrics["skipped"][0]["reason"]
    assert metrics["workers"]["n"] == 2          # what the 2-CPU cluster holds
    # the cluster is the user's: it is still up after the run
    assert subprocess.run([str(Path(sys.executable).parent / "ray"), "status", "--address", head_node],
                          capture_output=True, timeout=60,
                          env={**os.environ, "RAY_AUTH_MODE": "token"}).returncode == 0


def test_without_ray_the_error_says_what_to_install(tmp_path, monkeypatch, capsys):
    from hsets_widgets.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)        # as if it were not installed
    assert main(["evaluate", str(photos(tmp_path / "p", 1)), "--workers", "2", "--out",
                 str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'hsets-widgets[ray]'" in err[0]
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "argument --workers: need a whole number >= 1, got 0"),
    (["--workers", "2", "--threads-per-worker", "0"], "argument --threads-per-worker: need a whole number >= 1"),
    (["--workers", "2", "--max-attempts", "0"], "argument --max-attempts: need a whole number >= 1"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker needs --workers or --address"),
    (["--address", "127.0.0.1:PORT"], "no Ray cluster at --address 127.0.0.1:"),
])
def test_bad_cluster_options_fail_before_any_work(tmp_path, capsys, args, message):
    from hsets_widgets.cli.main import main

    args = [a.replace("PORT", str(free_port())) for a in args]        # a port nothing listens on
    assert main(["evaluate", str(photos(tmp_path / "p", 1)), "--out", str(tmp_path / "e"), *args]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
