"""``hsets evaluate`` on a Ray cluster: long-lived workers, one writer, resumable, nothing lost.

:func:`run_on_ray` runs the evaluation of :func:`~hsets_widgets.evaluation.runner.run_evaluation`
with the images spread over Ray actors. Each actor loads the classifier once and explains one
image at a time with :func:`~hsets_widgets.evaluation.runner.evaluate_item`, the function the
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
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from ..common import quiet_auto_segmenter
from ..progress import ProgressFn, check_progress, report
from .baselines import Method
from .datasets import ImageItem
from .insertion import KINDS as CURVE_KINDS
from .road import ROAD_ORDERS
from .runner import (
    DEFAULT_METHODS,
    RunSettings,
    SkippedImage,
    UnreadableImage,
    evaluate_item,
    failed_record,
    missing_methods,
    open_results,
    read_item,
    run_settings,
    store_item,
    stored_maps,
    write_summary,
)
from .store import append_record

log = logging.getLogger(__name__)

#: environment variables the workers get from the driver (offline switch, cache folders)
FORWARDED_ENV = ("HSETS_", "TORCH_HOME", "XDG_CACHE_HOME")


def require_ray(address: Optional[str] = None):
    """Import Ray, or fail with the one line that says how to get it.

    With an ``address`` to join, this machine's Ray token is used (:func:`use_token_if_any`,
    which must run before Ray is first imported).
    """
    if address is not None:
        use_token_if_any()
    try:
        import ray
    except ImportError as err:
        raise RuntimeError("--workers / --address need Ray: pip install 'hsets-widgets[ray]' "
                           "(or run without them: one process)") from err
    return ray


def check_cluster_options(workers: Optional[int], threads_per_worker: int, gpus_per_worker: float,
                          max_attempts: int) -> None:
    """Refuse worker counts, threads, GPUs or attempts that cannot work, with the option named."""
    for name, value, low in (("workers", workers, 1), ("threads_per_worker", threads_per_worker, 1),
                             ("max_attempts", max_attempts, 1)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < low):
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= {low}, got {value!r}")
    if not gpus_per_worker >= 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker!r}")


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


def connect(ray, workers: Optional[int], address: Optional[str], threads: int,
            gpus_per_worker: float, quiet: bool) -> tuple:
    """Start a local cluster (``address=None``) or join one, unless this process is already
    connected; ``(number of workers, whether this call started a cluster)``.
    """
    if ray.is_initialized():
        return workers or fitting_workers(ray, threads, gpus_per_worker, "the connected cluster"), False
    common = dict(include_dashboard=False, log_to_driver=not quiet,
                  logging_level=logging.ERROR if quiet else logging.INFO,
                  runtime_env={"env_vars": _worker_env()})
    if address is None:
        n = workers or max(1, (os.cpu_count() or 1) // threads)
        gpus = None if gpus_per_worker == 0 else gpus_per_worker * n
        # "local": a new cluster for this run, even if `ray start` left one on this machine
        ray.init(address="local", num_cpus=n * threads, num_gpus=gpus, **common)
        return n, True
    try:
        ray.init(address=address, **common)
    except ConnectionError as err:
        raise RuntimeError(f"no Ray cluster at --address {address}: {err} (start one with "
                           "`ray start --head`, or drop --address for a local one)") from err
    return workers or fitting_workers(ray, threads, gpus_per_worker, f"the cluster at {address}"), False


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
               methods: Sequence[Union[str, Method]] = DEFAULT_METHODS,
               percentages: Union[str, Sequence[float]] = "fine", orders: Sequence[str] = ROAD_ORDERS,
               limit: Optional[int] = None, seed: int = 0, noise: float = 0.01, batch_size: int = 16,
               match_support: Union[str, float] = "min", progress: Optional[ProgressFn] = None,
               skipped: Optional[list] = None, curves: Sequence[str] = CURVE_KINDS,
               correct_only: bool = False, *,
               workers: Optional[int] = None, address: Optional[str] = None,
               threads_per_worker: int = 1, gpus_per_worker: float = 0.0, max_attempts: int = 3,
               on_event: Optional[Callable[[WorkerEvent], None]] = None, quiet: bool = False,
               classifier=None) -> dict:
    """Evaluate ``methods`` on ``items`` with Ray workers; write results under ``out_dir``.

    The arguments up to ``correct_only`` are those of
    :func:`~hsets_widgets.evaluation.runner.run_evaluation` (the records are the same), except
    that the classifier comes as ``load_model``: a picklable callable, ``load_model(device=...)``
    -> classifier (e.g. ``functools.partial(load_classifier, "resnet50")``), called once in every
    worker, and in the driver (on the CPU: the model's name and input size) unless ``classifier``
    is given.

    Parameters
    ----------
    workers : int, optional
        Number of workers (actors). Default: one per ``threads_per_worker`` CPUs of the
        machine, or of the cluster at ``address``.
    address : str, optional
        ``"auto"`` or ``"HOST:PORT"`` of a running cluster (``ray start --head``, KubeRay);
        without it a local cluster is started for this run and stopped at its end.
    threads_per_worker : int
        Torch threads (and Ray CPUs) of each worker.
    gpus_per_worker : float
        GPUs each worker reserves (it then runs on ``cuda``); 0 for the CPU.
    max_attempts : int
        How many workers may die on one image before it is recorded as failed.
    on_event : callable, optional
        Called with a :class:`WorkerEvent` for every worker ready, image done, retry or
        failure (the CLI logs them); the module's logger gets the same lines at INFO.
    quiet : bool
        Silence Ray's own start-up lines and the workers' forwarded output.
    classifier : Classifier, optional
        The same model already loaded in the driver (the CLI has it for the class names).

    Returns
    -------
    dict
        The content written to ``metrics.json`` (with ``n_failed``, ``failed`` and ``workers``).
    """
    progress = check_progress(progress)
    check_cluster_options(workers, threads_per_worker, gpus_per_worker, max_attempts)
    settings = run_settings(methods, percentages, orders, seed, noise, batch_size, match_support, curves,
                            correct_only)
    ray = require_ray(address)
    if address is not None and not ray.is_initialized():
        reachable(address)          # before the model loads and the folder is made
    driver_model = classifier if classifier is not None else load_model(device="cpu")
    out, done = open_results(out_dir, driver_model, settings)
    items = list(items)[:limit] if limit is not None else list(items)
    todo = deque((item, 0) for item in items if missing_methods(settings, done.get(item.key)))
    counts = {"resumed": len(items) - len(todo), "computed": 0}
    skipped, failed = list(skipped or []), []
    report(progress, "evaluate", counts["resumed"], len(items))
    if not todo:
        return write_summary(out, driver_model, items, done, settings, counts, skipped)

    def emit(event: WorkerEvent) -> None:
        log.info(event.line())
        if on_event is not None:
            on_event(event)

    t_start = time.perf_counter()
    n, started = connect(ray, workers, address, threads_per_worker, gpus_per_worker, quiet)
    device = "cuda" if gpus_per_worker else "cpu"
    actor_cls = ray.remote(EvaluationWorker).options(
        num_cpus=threads_per_worker, num_gpus=gpus_per_worker, max_restarts=-1, max_task_retries=0)
    actors = []
    try:
        actors = [actor_cls.remote(load_model, settings, threads_per_worker, device) for _ in range(n)]
        try:
            infos = ray.get([a.describe.remote() for a in actors])
        except ray.exceptions.RayActorError as err:
            raise RuntimeError(f"the Ray workers could not start: {err}") from err
        startup = time.perf_counter() - t_start
        pids = {w: info["pid"] for w, info in enumerate(infos)}
        for w, info in enumerate(infos):
            emit(WorkerEvent("ready", w, info["pid"], reason=f"{info['model']} on {info['device']} "
                                                             f"({info['threads']} threads, {info['host']})"))
        _schedule(ray, actors, pids, driver_model, todo, done, out, counts, failed, skipped,
                  max_attempts, len(items), progress, emit)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
    extra = {"workers": {"n": n, "threads_per_worker": threads_per_worker,
                         "gpus_per_worker": gpus_per_worker, "address": address or "local",
                         "startup_seconds": startup}}
    return write_summary(out, driver_model, items, done, settings, counts, skipped, failed, extra)


def _schedule(ray, actors, pids, classifier, todo, done, out, counts, failed, skipped, max_attempts,
              n_items, progress, emit) -> None:
    """Keep every worker busy with one image until ``todo`` is empty; store what comes back.

    A worker that died is given no work until Ray has restarted it (a ``describe`` call on it
    returns); the image it was running counts one attempt.
    """
    died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
            ray.exceptions.ObjectLostError, ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError)
    unavailable = ray.exceptions.ActorUnavailableError
    idle = deque(range(len(actors)))
    in_flight = {}        # ObjectRef -> (worker, item, attempts so far)
    probes = {}           # ObjectRef of describe() -> worker being restarted
    avoid = {}            # image key -> the worker it last died on
    lost = {}             # worker -> why it is gone for good
    finished = counts["resumed"]
    while todo or in_flight:
        while todo and idle:
            item, attempts = todo.popleft()
            try:     # read here, so the workers need no access to the files
                x = read_item(item, classifier)
            except UnreadableImage as err:
                warnings.warn(f"skipping {item.path}: {err}", stacklevel=2)
                skipped.append({"path": str(item.path), "reason": str(err)})
                finished += 1
                report(progress, "evaluate", finished, n_items)
                continue
            w = next((i for i in idle if i != avoid.get(item.key)), idle[0])
            idle.remove(w)
            prev = done.get(item.key)
            ref = actors[w].evaluate.remote(item, x, prev, stored_maps(out, item, prev))
            in_flight[ref] = (w, item, attempts)
        if todo and not in_flight and not probes and not idle:
            raise RuntimeError(f"every Ray worker is gone ({'; '.join(lost.values())}); "
                               f"{len(todo)} images left undone, rerun to resume")
        ready, _ = ray.wait(list(in_flight) + list(probes), num_returns=1, timeout=1.0)
        for ref in ready:
            if ref in probes:
                w = probes.pop(ref)
                try:
                    info = ray.get(ref)
                except unavailable:
                    time.sleep(0.2)
                    probes[actors[w].describe.remote()] = w
                except died as err:
                    lost[w] = f"worker {w}: {type(err).__name__}"
                else:
                    pids[w] = info["pid"]
                    idle.append(w)
                    emit(WorkerEvent("ready", w, info["pid"], reason=f"restarted on {info['host']}"))
                continue
            w, item, attempts = in_flight.pop(ref)
            try:
                res = ray.get(ref)
            except (unavailable, *died) as err:
                # the worker died (Ray says "unavailable" while it restarts one that died
                # mid-call): wait for its restart, count the image one attempt
                probes[actors[w].describe.remote()] = w
                reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                attempts += 1
                if attempts < max_attempts:
                    avoid[item.key] = w
                    todo.appendleft((item, attempts))
                    emit(WorkerEvent("retry", w, pids.get(w), item.path.name, attempt=attempts,
                                     reason=reason))
                    continue
                append_record(out / "results.jsonl", failed_record(item, reason, attempts))
                failed.append({"path": str(item.path), "reason": reason, "attempts": attempts})
                emit(WorkerEvent("failed", w, pids.get(w), item.path.name, attempt=attempts, reason=reason))
            except ray.exceptions.RayTaskError as err:
                raise err.as_instanceof_cause() from None
            else:
                idle.append(w)
                pids[w] = res["pid"]
                if "skipped" in res:
                    skipped.append({"path": str(item.path), "reason": res["skipped"]})
                    emit(WorkerEvent("skipped", w, res["pid"], item.path.name, res["seconds"],
                                     reason=res["skipped"]))
                else:
                    store_item(out, res["record"], res["maps"])
                    done[item.key] = res["record"]
                    counts["computed"] += 1
                    emit(WorkerEvent("done", w, res["pid"], item.path.name, res["seconds"]))
            finished += 1
            report(progress, "evaluate", finished, n_items)
