"""``hsets explore``: arguments, the app's environment, and a real (browserless) Voila start."""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, one_line_error, run_cli, wait_until
from PIL import Image

from hsets_widgets.cli import explore
from hsets_widgets.widgets import app


def parse(argv):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command")
    explore.add_parser(sub)
    return ap.parse_args(["explore", *argv])


def test_parser_defaults_and_options():
    a = parse([])
    assert a.image is None and a.model is None and a.port is None and not a.no_browser
    a = parse(["photo.jpg", "--model", "resnet18", "--port", "9000", "--no-browser",
               "--set", "nu=32", "--set", "order=dfs", "--segmenter", "slic"])
    assert (a.image, a.model, a.port, a.no_browser, a.segmenter) == ("photo.jpg", "resnet18", 9000,
                                                                      True, "slic")
    assert explore.parse_settings(a.settings) == {"nu": 32, "order": "dfs"}


def test_cli_is_wired_into_hsets():
    from hsets_widgets.cli.main import build_parser

    args = build_parser().parse_args(["explore", "--no-browser"])
    assert args.handler is explore.run


def test_bad_settings_and_images_are_explained(tmp_path):
    with pytest.raises(ValueError, match="KEY=VALUE"):
        explore.parse_settings(["nu"])
    with pytest.raises(ValueError, match="unknown H-Sets setting"):
        explore.parse_settings(["colour=blue"])
    with pytest.raises(ValueError, match="image not found"):
        explore.resolve_image(str(tmp_path / "missing.png"))
    assert explore.resolve_image(None) == "chelsea"
    assert explore.resolve_image("coffee") == "coffee"
    f = tmp_path / "x.png"
    f.write_bytes(b"")                           # refused before a server starts for it
    with pytest.raises(ValueError, match="cannot read"):
        explore.resolve_image(str(f))
    Image.new("RGB", (16, 16)).save(f)
    assert explore.resolve_image(str(f)) == str(f.resolve())


def test_environment_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = explore.app_environment(parse(["coffee", "--preset", "paper", "--set", "nu=48",
                                         "--segmenter", "slic"]), base={})
    assert env[app.ENV_IMAGE] == "coffee" and app.ENV_MODEL not in env
    s = app.settings_from_env(env)
    assert s == {"image": "coffee", "model": None, "preset": "paper", "segmenter": "slic", "nu": 48,
                 "export_folder": "hsets-export", "export_root": str(tmp_path)}
    with pytest.raises(ValueError, match="JSON"):
        app.settings_from_env({app.ENV_SETTINGS: "nu=4"})
    assert app.settings_from_env({})["image"] == "chelsea"


def test_the_app_exports_into_the_folder_it_was_started_in(tmp_path, monkeypatch):
    """The kernel runs elsewhere (Voila: the package folder); the Export tab still writes into
    the folder `hsets explore` was started in (it used to refuse: outside its working folder).
    """
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    monkeypatch.chdir(kernel_dir)
    started = tmp_path / "started-here"
    started.mkdir()
    s = app.settings_from_env({app.ENV_EXPORT: str(started)})
    import torch
    from torch import nn

    from hsets_widgets.hsets.explain import Explainer
    from hsets_widgets.model.models import wrap_module
    from hsets_widgets.widgets import ExportPanel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    clf = wrap_module(net, normalize=lambda x: x, input_size=16, class_names=["a", "b", "c"], name="t")
    panel = ExportPanel(Explainer(np.zeros((16, 16, 3), np.float32), clf, segmenter="slic"),
                        folder=s["export_folder"], root=s["export_root"])
    panel._run(panel.save_png)
    assert "Saved" in panel.result.value, panel.result.value
    assert (started / "hsets-export" / "hsets-view.png").exists()


def test_packaged_app_notebook_matches_its_source(tmp_path):
    shipped = json.loads(app.APP_NOTEBOOK.read_text())
    assert shipped == app.notebook_json()
    copy = app.app_notebook(tmp_path)
    assert json.loads(copy.read_text()) == shipped


@pytest.mark.network
def test_ports():
    port = explore.free_port(0)
    assert explore.port_is_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert not explore.port_is_free(busy)
        assert explore.free_port(busy) != busy
        with pytest.raises(RuntimeError, match="in use"):
            explore.run(parse(["--port", str(busy), "--no-browser"]))


def test_voila_command():
    cmd = explore.voila_command(app.APP_NOTEBOOK, 8999, open_browser=False, token=True)
    assert cmd[:3] == [sys.executable, "-m", "voila"] and "--port=8999" in cmd
    # the token itself is read from a file named in the environment, never on the command line
    assert "--Voila.ip=127.0.0.1" in cmd and "--no-browser" in cmd and "--Voila.auto_token=True" in cmd
    assert not any(c.startswith("--Voila.token") for c in cmd)
    assert "--Voila.token=" in explore.voila_command(app.APP_NOTEBOOK, 8999, False, token=False)
    # kernels of gone pages stop (culling as a backstop), one kernel is prepared for the next page
    assert "--MappingKernelManager.cull_connected=False" in cmd and "--preheat_kernel=True" in cmd
    assert "--preheat_kernel=True" not in explore.voila_command(app.APP_NOTEBOOK, 8999, False, preheat=False)


def fetch_without_redirect(url: str) -> tuple:
    """``(status, Location header)`` of a GET, not following redirects."""
    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(Stop).open(url, timeout=60) as r:
            return r.status, r.headers.get("Location", "")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Location", "")


@pytest.mark.network
def test_hsets_explore_serves_and_prints_its_address(tmp_path):
    pytest.importorskip("voila")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explore", "--no-browser",
                             "--port", str(port), "--segmenter", "slic"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    children = []
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/?token=" in first, first
        token = first.split("?token=")[1].split()[0]
        assert len(token) >= 24
        deadline = time.monotonic() + 60
        while True:          # probe a static file: the notebook URL would start a kernel
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/favicon.ico",
                                            timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "voila did not start"
                time.sleep(0.5)
        # the app needs the token: without it (or with a wrong one) the server sends a login page
        for query in ("", f"?token=wrong{token}"):
            status, location = fetch_without_redirect(f"http://127.0.0.1:{port}/{query}")
            assert status == 302 and "login" in location, (status, location)
        status, _ = fetch_without_redirect(f"http://127.0.0.1:{port}/?token={token}")
        assert status == 200
        children = children_of(proc.pid)
        assert children, "no Voila process found"
        proc.terminate()                  # SIGTERM to `hsets explore` must stop Voila too
        rc = proc.wait(timeout=30)        # TimeoutExpired: `hsets explore` did not stop
        # Voila shut down cleanly on the forwarded signal and its status was passed on
        assert rc == 0, (rc, proc.stdout.read()[-2000:])
        wait_until(lambda: not any(alive(pid) for pid in children), 20, "Voila to stop with `hsets explore`")
        with pytest.raises(ConnectionRefusedError):       # and nothing listens on the port any more
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:
            if alive(pid):
                os.kill(pid, 15)          # Voila stops its kernel on SIGTERM


def children_of(pid: int) -> list:
    try:
        text = open(f"/proc/{pid}/task/{pid}/children").read()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


# ---- bad input refused before the server starts -------------------------------------------------
def test_explore_refuses_an_unreadable_image_before_serving(tmp_path):
    from hsets_widgets.cli.explore import resolve_image
    from hsets_widgets.model.images import ImageError

    (tmp_path / "photo.jpg").write_text("not a photo")
    with pytest.raises(ImageError, match="cannot read"):
        resolve_image(str(tmp_path / "photo.jpg"))


def test_explore_checks_its_settings_against_its_preset(capsys, no_server):
    code, _, err = run_cli(capsys, "explore", "--no-browser", "--preset", "paper", "--set", "fresh=true")
    assert code == 1 and "fresh" in one_line_error(err, "explore")


def test_explore_refuses_an_unknown_model_before_the_server_starts(capsys, no_server):
    code, _, err = run_cli(capsys, "explore", "--no-browser", "--model", "bogusnet")
    assert code == 1 and "unknown model 'bogusnet'" in one_line_error(err, "explore")


# ---- the access token is never on a command line ------------------------------------------------
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


@pytest.mark.network
def test_explore_token_is_not_on_any_command_line(tmp_path):
    pytest.importorskip("voila")
    import stat

    port = free_port()
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


# ---- `kill -9` of `hsets explore` leaves no server and no folder behind -------------------------
@pytest.mark.network
def test_kill_9_of_explore_stops_voila_and_the_next_run_removes_its_folder(tmp_path):
    pytest.importorskip("voila")
    import signal
    import socket
    import tempfile

    from hsets_widgets.cli import explore

    port = free_port()
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
        wait_until(lambda: not any(alive(p) for p in voila), 30, "Voila to end")   # not our child: poll
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
