"""``hsets evaluate`` on a Ray cluster: long-lived workers, one writer, resumable, nothing lost.

:func:`run_on_ray` runs the evaluation of :func:`~hsets_widgets.runs.runner.run_evaluation`
with the images spread over Ray actors. Each actor loads the classifier once and explains one
image at a time with :func:`~hsets_widgets.runs.runner.evaluate_item`, the function the
single-process loop calls, with the same settings, so the records are the same. The driver is
the only writer: it stores each finished image (maps, CSV, then its line of ``results.jsonl``),
so resuming and ``metrics.json`` work unchanged.

Images go to whichever worker is free, one at a time (a slow image holds no batch). A worker
that dies (killed, out of memory, its node lost) is restarted by Ray and its image retried,
on another worker where there is one, up to ``max_attempts`` times; then the image is
recorded as failed with the reason (a ``"status": "failed"`` line, never counted as done, so
a rerun tries it again). An exception raised by a method stops the run, as in the
single-process path. Interrupting the driver stops the workers, and the cluster when the run
started it; every line already written stays valid.

Ray is an extra (``pip install hsets-widgets[ray]``); nothing else imports this module.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from ..plumbing.common import quiet_auto_segmenter
from ..plumbing.progress import ProgressFn, check_progress, report
from .datasets import ImageItem
from .runner import RunSettings, RunState, SkippedImage, UnreadableImage, evaluate_item

log = logging.getLogger(__name__)

#: environment variables the workers get from the driver (offline switch, cache folders)
FORWARDED_ENV = ("HSETS_", "TORCH_HOME", "XDG_CACHE_HOME")


def require_ray(address: Optional[str] = None):
    """Import Ray, or fail with the one line that says how to get it.

    With an ``address`` to join, this machine's Ray token is used (:func:`use_token_if_any`,
    which must run before Ray is first imported); without one, the local cluster this run
    starts talks over the loopback interface only (:func:`loopback_if_local`).
    """
    if address is not None:
        use_token_if_any()
    else:
        loopback_if_local()
    try:
        import ray
    except ImportError as err:
        raise RuntimeError("--workers / --address need Ray: pip install 'hsets-widgets[ray]' "
                           "(or run without them: one process)") from err
    return ray


@dataclass(frozen=True)
class ClusterOptions:
    """How an evaluation runs on Ray, validated when made (a one-line error names the option).

    Attributes
    ----------
    workers : int, optional
        Number of workers (actors). Default: one per ``threads_per_worker`` CPUs of the
        machine, or of the cluster at ``address``.
    address : str, optional
        ``"auto"`` or ``"HOST:PORT"`` of a running cluster (``ray start --head``, KubeRay);
        without it a local cluster is started for the run and stopped at its end.
    threads_per_worker : int
        Torch threads (and Ray CPUs) of each worker.
    gpus_per_worker : float
        GPUs each worker reserves (it then runs on ``cuda``); 0 for the CPU.
    max_attempts : int
        How many workers may die on one image before it is recorded as failed.
    quiet : bool
        Silence Ray's own start-up lines and the workers' forwarded output.
    """

    workers: Optional[int] = None
    address: Optional[str] = None
    threads_per_worker: int = 1
    gpus_per_worker: float = 0.0
    max_attempts: int = 3
    quiet: bool = False

    def __post_init__(self):
        for name in ("workers", "threads_per_worker", "max_attempts"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if not self.gpus_per_worker >= 0:
            raise ValueError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker!r}")

    @property
    def device(self) -> str:
        """Where the workers run: ``"cuda"`` when they reserve GPUs, else ``"cpu"``."""
        return "cuda" if self.gpus_per_worker else "cpu"

    def summary(self, n: int, startup_seconds: float) -> dict:
        """The ``workers`` entry of ``metrics.json``."""
        return {"n": n, "threads_per_worker": self.threads_per_worker,
                "gpus_per_worker": self.gpus_per_worker, "address": self.address or "local",
                "startup_seconds": startup_seconds}


@dataclass(frozen=True)
class WorkerEvent:
    """What a worker did, for the log: ``kind`` is ``"ready"``, ``"done"``, ``"skipped"``,
    ``"retry"`` (the worker died; the image goes back to the queue) or ``"failed"``.
    """

    kind: str
    worker: int
    pid: Optional[int] = None
    image: str = ""
    seconds: float = 0.0
    attempt: int = 0
    reason: str = ""

    def line(self) -> str:
        """One line for the log."""
        who = f"worker {self.worker}" + (f" (pid {self.pid})" if self.pid else "")
        if self.kind == "ready":
            return f"{who} ready: {self.reason}"
        if self.kind == "done":
            return f"{who} finished {self.image} in {self.seconds:.1f} s"
        if self.kind == "skipped":
            return f"{who} skipped {self.image}: {self.reason}"
        if self.kind == "retry":
            return f"{who} died on {self.image} (attempt {self.attempt}): {self.reason}; retrying"
        return f"{who}: {self.image} failed after {self.attempt} attempts: {self.reason}"


class EvaluationWorker:
    """A Ray actor: loads the classifier once, then evaluates images one after another."""

    def __init__(self, load_model: Callable, settings: RunSettings, threads: int, device: str):
        import torch

        torch.set_num_threads(int(threads))
        self.classifier = load_model(device=device)
        self.settings = settings
        self.device = device

    def describe(self) -> dict:
        """Who this worker is: process, device, threads, model."""
        import torch

        return {"pid": os.getpid(), "device": self.device, "threads": torch.get_num_threads(),
                "model": getattr(self.classifier, "name", type(self.classifier).__name__),
                "host": os.uname().nodename}

    def evaluate(self, item: ImageItem, x, prev: Optional[dict], prev_maps: dict) -> dict:
        """``{"record", "maps"}`` of one image (read by the driver as ``x``), or
        ``{"skipped": reason}``; with ``pid`` and ``seconds``.
        """
        t0 = time.perf_counter()
        with quiet_auto_segmenter():
            try:
                record, maps = evaluate_item(item, self.classifier, self.settings, prev, prev_maps, x)
                out = {"record": record, "maps": maps}
            except SkippedImage as err:
                out = {"skipped": str(err)}
        return {**out, "pid": os.getpid(), "seconds": time.perf_counter() - t0}


def _worker_env() -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def connect(ray, options: ClusterOptions) -> tuple:
    """Start a local cluster (no ``address``) or join one, unless this process is already
    connected; ``(number of workers, whether this call started a cluster)``.
    """
    threads, gpus_per_worker, address = options.threads_per_worker, options.gpus_per_worker, options.address
    if ray.is_initialized():
        return options.workers or fitting_workers(ray, threads, gpus_per_worker, "the connected cluster"), False
    common = dict(include_dashboard=False, log_to_driver=not options.quiet,
                  logging_level=logging.ERROR if options.quiet else logging.INFO,
                  runtime_env={"env_vars": _worker_env()})
    if address is None:
        n = options.workers or max(1, (os.cpu_count() or 1) // threads)
        gpus = None if gpus_per_worker == 0 else gpus_per_worker * n
        # "local": a new cluster for this run, even if `ray start` left one on this machine
        ray.init(address="local", num_cpus=n * threads, num_gpus=gpus, **common)
        return n, True
    try:
        ray.init(address=address, **common)
    except ConnectionError as err:
        raise RuntimeError(f"no Ray cluster at --address {address}: {err} (start one with "
                           "`ray start --head`, or drop --address for a local one)") from err
    return options.workers or fitting_workers(ray, threads, gpus_per_worker, f"the cluster at {address}"), False


def loopback_if_local() -> None:
    """Keep a local cluster on 127.0.0.1, unless told otherwise.

    Ray binds a cluster it starts to this machine's network address so that other machines
    can join; a cluster started for one run on this machine needs no other machine, so its
    processes use the loopback interface (Ray's own switch, read when Ray is first imported:
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). A process that imported Ray before keeps Ray's
    choice.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def use_token_if_any() -> None:
    """Send this machine's Ray token when joining a cluster, unless told otherwise.

    ``ray start`` (Ray 2.59+) starts clusters with token authentication, but a driver joining
    one only sends its token when ``RAY_AUTH_MODE=token`` is set before Ray is imported;
    without it Ray retries for minutes.
    A client in token mode also joins clusters without authentication, so token mode is
    chosen whenever a token is at hand and ``RAY_AUTH_MODE`` is not set.
    """
    have = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file())
    if have and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"


def reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once when nothing listens at ``HOST:PORT`` (Ray itself would wait for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or address.startswith(("ray://", "http")):
        return                      # "auto", or a client / job address Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RuntimeError(f"no Ray cluster at --address {address}: {err.strerror or err} (start one "
                           "with `ray start --head`, or drop --address for a local one)") from None


def fitting_workers(ray, threads: int, gpus_per_worker: float, where: str) -> int:
    """How many workers of ``threads`` CPUs (and ``gpus_per_worker`` GPUs) the cluster holds."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // threads)
    if gpus_per_worker:
        n = min(n, int(res.get("GPU", 0) // gpus_per_worker))
    if n < 1:
        raise RuntimeError(f"{where} has {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} GPUs: "
                           f"not enough for one worker of {threads} threads and {gpus_per_worker:g} "
                           "GPUs; lower --threads-per-worker or --gpus-per-worker")
    return n


def run_on_ray(items: Sequence[ImageItem], load_model: Callable, out_dir: Union[str, Path],
               settings: RunSettings, cluster_options: ClusterOptions = ClusterOptions(), *,
               progress: Optional[ProgressFn] = None, limit: Optional[int] = None,
               skipped: Optional[list] = None, on_event: Optional[Callable[[WorkerEvent], None]] = None,
               classifier=None, checkpoint=None) -> dict:
    """Evaluate on ``items`` with Ray workers; write results under ``out_dir``.

    Parameters
    ----------
    items, out_dir, progress, limit, skipped, checkpoint
        As for :func:`~hsets_widgets.runs.runner.run_evaluation` (the records are the same).
    load_model : callable
        Picklable, ``load_model(device=...)`` -> classifier (e.g.
        ``functools.partial(load_classifier, "resnet50")``); called once in every worker, and in
        the driver (on the CPU: the model's name and input size) unless ``classifier`` is given.
    settings : RunSettings
        What the numbers depend on: methods, percentages, orders, seed... (made by
        :func:`~hsets_widgets.runs.runner.run_settings`).
    cluster_options : ClusterOptions
        Workers, cluster address, threads and GPUs per worker, attempts per image.
    on_event : callable, optional
        Called with a :class:`WorkerEvent` for every worker ready, image done, retry or
        failure (the CLI logs them); the module's logger gets the same lines at INFO.
    classifier : Classifier, optional
        The same model already loaded in the driver (the CLI has it for the class names).

    Returns
    -------
    dict
        The content written to ``metrics.json`` (with ``n_failed``, ``failed`` and ``workers``).
    """
    progress = check_progress(progress)
    _check_types(settings, cluster_options)
    ray = require_ray(cluster_options.address)
    if cluster_options.address is not None and not ray.is_initialized():
        reachable(cluster_options.address)          # before the model loads and the folder is made
    driver_model = classifier if classifier is not None else load_model(device="cpu")
    run = RunState.open(items, driver_model, out_dir, settings, limit, skipped, checkpoint)
    todo = deque((item, 0) for item in run.items if run.missing(item))
    run.counts["resumed"] = len(run.items) - len(todo)
    report(progress, "evaluate", run.counts["resumed"], len(run.items))
    if not todo:
        return run.summary()
    emit = _emitter(on_event)
    t_start = time.perf_counter()
    n, started = connect(ray, cluster_options)
    actors = []
    try:
        actors = start_workers(ray, load_model, settings, cluster_options, n)
        infos = describe_workers(ray, actors)
        startup = time.perf_counter() - t_start
        pids = announce(infos, emit)
        Scheduler(ray, actors, pids, run, todo, cluster_options.max_attempts, progress, emit).run()
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
    return run.summary({"workers": cluster_options.summary(n, startup)})


def _check_types(settings, cluster_options) -> None:
    if not isinstance(settings, RunSettings):
        raise TypeError(f"settings must be a RunSettings (make it with run_settings(methods=..., ...)), "
                        f"got {type(settings).__name__}")
    if not isinstance(cluster_options, ClusterOptions):
        raise TypeError(f"cluster_options must be a ClusterOptions (e.g. ClusterOptions(workers=2)), "
                        f"got {type(cluster_options).__name__}")


def _emitter(on_event: Optional[Callable[[WorkerEvent], None]]) -> Callable[[WorkerEvent], None]:
    """A function that logs an event and passes it to ``on_event``."""
    def emit(event: WorkerEvent) -> None:
        log.info(event.line())
        if on_event is not None:
            on_event(event)
    return emit


def start_workers(ray, load_model: Callable, settings: RunSettings, options: ClusterOptions, n: int) -> list:
    """``n`` :class:`EvaluationWorker` actors, restarted by Ray whenever one dies."""
    actor_cls = ray.remote(EvaluationWorker).options(
        num_cpus=options.threads_per_worker, num_gpus=options.gpus_per_worker, max_restarts=-1,
        max_task_retries=0)
    return [actor_cls.remote(load_model, settings, options.threads_per_worker, options.device) for _ in range(n)]


def describe_workers(ray, actors: list) -> list:
    """Wait until every worker has loaded its model; what each says of itself."""
    try:
        return ray.get([a.describe.remote() for a in actors])
    except ray.exceptions.RayActorError as err:
        raise RuntimeError(f"the Ray workers could not start: {err}") from err


def announce(infos: list, emit: Callable[[WorkerEvent], None]) -> dict:
    """Emit a ``ready`` event per worker; ``{worker: pid}``."""
    for w, info in enumerate(infos):
        emit(WorkerEvent("ready", w, info["pid"], reason=f"{info['model']} on {info['device']} "
                                                         f"({info['threads']} threads, {info['host']})"))
    return {w: info["pid"] for w, info in enumerate(infos)}


class Scheduler:
    """Keeps every worker busy with one image until the queue is empty; stores what comes back.

    Images go to whichever worker is free, one at a time. A worker that died is given no work
    until Ray has restarted it (a ``describe`` call on it returns); the image it was running
    counts one attempt and goes back to the front of the queue, for another worker where there
    is one, until ``max_attempts``; then it is recorded as failed.
    """

    def __init__(self, ray, actors: list, pids: dict, run: RunState, todo: deque, max_attempts: int,
                 progress: ProgressFn, emit: Callable[[WorkerEvent], None]):
        self.ray, self.actors, self.pids, self.state = ray, actors, pids, run
        self.todo = todo                  # (item, attempts so far), next first
        self.max_attempts, self.progress, self.emit = max_attempts, progress, emit
        self.idle = deque(range(len(actors)))
        self.in_flight = {}               # ObjectRef -> (worker, item, attempts so far)
        self.probes = {}                  # ObjectRef of describe() -> worker being restarted
        self.avoid = {}                   # image key -> the worker it last died on
        self.lost = {}                    # worker -> why it is gone for good
        self.finished = run.counts["resumed"]
        errors = ray.exceptions
        self.died = (errors.RayActorError, errors.WorkerCrashedError, errors.ObjectLostError,
                     errors.OutOfMemoryError, errors.NodeDiedError)

    def run(self) -> None:
        """Schedule until every image is stored, skipped or failed."""
        while self.todo or self.in_flight:
            self.dispatch()
            if self.todo and not self.in_flight and not self.probes and not self.idle:
                raise RuntimeError(f"every Ray worker is gone ({'; '.join(self.lost.values())}); "
                                   f"{len(self.todo)} images left undone, rerun to resume")
            ready, _ = self.ray.wait(list(self.in_flight) + list(self.probes), num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in self.probes:
                    self.on_probe(ref)
                else:
                    self.on_result(ref)

    def dispatch(self) -> None:
        """Give the next images to the idle workers (the driver reads each image)."""
        while self.todo and self.idle:
            item, attempts = self.todo.popleft()
            try:     # read here, so the workers need no access to the files
                x = self.state.read(item)
            except UnreadableImage as err:
                self.state.skip(item, err)
                self.advance()
                continue
            w = next((i for i in self.idle if i != self.avoid.get(item.key)), self.idle[0])
            self.idle.remove(w)
            ref = self.actors[w].evaluate.remote(item, x, *self.state.previous(item))
            self.in_flight[ref] = (w, item, attempts)

    def on_probe(self, ref) -> None:
        """A restarting worker answered (back to work), or is gone for good."""
        w = self.probes.pop(ref)
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            time.sleep(0.2)
            self.probe(w)
        except self.died as err:
            self.lost[w] = f"worker {w}: {type(err).__name__}"
        else:
            self.pids[w] = info["pid"]
            self.idle.append(w)
            self.emit(WorkerEvent("ready", w, info["pid"], reason=f"restarted on {info['host']}"))

    def on_result(self, ref) -> None:
        """Store a finished image, count a skipped one, or handle the death of its worker."""
        w, item, attempts = self.in_flight.pop(ref)
        try:
            res = self.ray.get(ref)
        except (self.ray.exceptions.ActorUnavailableError, *self.died) as err:
            # the worker died (Ray says "unavailable" while it restarts one that died
            # mid-call): wait for its restart, count the image one attempt
            self.probe(w)
            self.on_death(w, item, attempts + 1, err)
            return
        except self.ray.exceptions.RayTaskError as err:
            raise err.as_instanceof_cause() from None
        self.idle.append(w)
        self.pids[w] = res["pid"]
        if "skipped" in res:
            self.state.skip(item, res["skipped"])
            self.emit(WorkerEvent("skipped", w, res["pid"], item.path.name, res["seconds"], reason=res["skipped"]))
        else:
            self.state.store(res["record"], res["maps"])
            self.emit(WorkerEvent("done", w, res["pid"], item.path.name, res["seconds"]))
        self.advance()

    def on_death(self, w: int, item: ImageItem, attempts: int, err: Exception) -> None:
        """Requeue ``item`` (for another worker) unless it has had ``max_attempts``; then fail it."""
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if attempts < self.max_attempts:
            self.avoid[item.key] = w
            self.todo.appendleft((item, attempts))
            self.emit(WorkerEvent("retry", w, self.pids.get(w), item.path.name, attempt=attempts, reason=reason))
            return
        self.state.fail(item, reason, attempts)
        self.emit(WorkerEvent("failed", w, self.pids.get(w), item.path.name, attempt=attempts, reason=reason))
        self.advance()

    def probe(self, w: int) -> None:
        """Ask worker ``w`` who it is: the answer comes once Ray has restarted it."""
        self.probes[self.actors[w].describe.remote()] = w

    def advance(self) -> None:
        """One more image finished (stored, skipped or failed): report progress."""
        self.finished += 1
        report(self.progress, "evaluate", self.finished, len(self.state.items))
