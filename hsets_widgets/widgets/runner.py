"""One background thread for the Explorer's expensive work.

Widgets never compute Hessian rows, Integrated Gradients or ROAD curves in the kernel's
main thread: they hand a *job* to a :class:`BackgroundRunner`, which runs jobs one at a
time in a daemon thread (the machine's cores are better used by one torch computation than
by two competing ones). A job of a given ``kind`` supersedes an older one of the same kind:
the older one is dropped if still waiting, or cancelled through its
:class:`~hsets_widgets.plumbing.progress.CancelToken` if running. Moving a slider quickly therefore
never piles up work.

The runner reports through callbacks (``on_start``, ``on_progress``, ``on_finish``) so it
knows nothing about traitlets or widgets.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..plumbing.progress import Cancelled, CancelToken


@dataclass
class Job:
    """A unit of background work.

    Attributes
    ----------
    kind : str
        Jobs of the same kind supersede each other (``"grow"``, ``"road"``...).
    label : str
        What the status line says while it runs ("Growing the set of (12, 30)").
    work : callable
        ``work(progress, cancel) -> result``; runs in the background thread and must not
        touch widgets.
    apply : callable, optional
        ``apply(result)``; runs in the background thread after ``work`` succeeded, under
        the owner's lock (see :class:`BackgroundRunner`), and may update widgets.
    """

    kind: str
    label: str
    work: Callable[[Callable, CancelToken], Any]
    apply: Optional[Callable[[Any], None]] = None
    cancel: CancelToken = field(default_factory=CancelToken)
    outcome: str = "pending"          # pending, running, done, cancelled, failed, dropped
    error: Optional[BaseException] = None
    traceback: str = ""
    seconds: float = 0.0
    superseded: bool = False          # cancelled because newer work of its kind replaced it
    key: Any = None                   # the owner's tag (e.g. the settings it was asked with)


class BackgroundRunner:
    """Run :class:`Job` s one at a time in a daemon thread.

    Parameters
    ----------
    lock : threading.RLock
        Held while a job's ``apply`` runs (the owner holds it too when it changes state in
        the main thread, so widgets are never updated from two threads at once).
    on_start, on_progress, on_finish : callable, optional
        ``on_start(job)``, ``on_progress(job, stage, done, total)`` (throttled to
        ``min_interval`` seconds, plus every ``done == total``) and ``on_finish(job)``.
    synchronous : bool
        Run jobs inline in :meth:`submit` (scripts and some tests).
    """

    def __init__(self, lock=None, on_start=None, on_progress=None, on_finish=None,
                 synchronous: bool = False, min_interval: float = 0.1):
        self.lock = lock or threading.RLock()
        self.on_start = on_start
        self.on_progress = on_progress
        self.on_finish = on_finish
        self.synchronous = synchronous
        self.min_interval = min_interval
        self._cv = threading.Condition()
        self._queue: list = []
        self._current: Optional[Job] = None
        self._thread: Optional[threading.Thread] = None
        self.history: list = []   # finished jobs, most recent last (bounded)

    # ---- public ------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue ``job``; drop waiting jobs of its kind and cancel a running one."""
        if self.synchronous:
            self._run(job)
            return job
        with self._cv:
            for old in [j for j in self._queue if j.kind == job.kind]:
                old.outcome = "dropped"
                self._queue.remove(old)
            if self._current is not None and self._current.kind == job.kind:
                self._current.superseded = True
                self._current.cancel.cancel()
            self._queue.append(job)
            self._ensure_thread()
            self._cv.notify_all()
        return job

    def cancel(self, kind: Optional[str] = None, superseded: bool = False) -> int:
        """Cancel the running job and drop waiting ones (of ``kind`` only, if given).

        ``superseded`` marks the running job as replaced by newer work (not a user cancel).
        """
        n = 0
        with self._cv:
            for old in [j for j in self._queue if kind is None or j.kind == kind]:
                old.outcome = "dropped"
                self._queue.remove(old)
                n += 1
            if self._current is not None and (kind is None or self._current.kind == kind):
                self._current.superseded = self._current.superseded or superseded
                self._current.cancel.cancel()
                n += 1
        return n

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancel everything and end the worker thread now, not after its idle wait (the owner
        is closed); True once the thread is gone. A later :meth:`submit` starts a new one.
        """
        self.cancel()
        with self._cv:
            thread = self._thread
            self._thread = None              # the loop sees it is no longer the worker and ends
            self._cv.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def busy(self) -> bool:
        """Whether a job is running or queued."""
        with self._cv:
            return self._current is not None or bool(self._queue)

    @property
    def waiting(self) -> int:
        """Number of jobs queued behind the running one."""
        with self._cv:
            return len(self._queue)

    @property
    def current(self) -> Optional[Job]:
        """The running job, if any."""
        return self._current

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until no job runs or waits; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._current is not None or self._queue:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
        return True

    # ---- internals ---------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="hsets-explorer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cv:
                while not self._queue:
                    if self._thread is not me:   # stopped: another thread (or none) is the worker
                        return
                    if not self._cv.wait(timeout=30.0) and not self._queue:
                        if self._thread is me:
                            self._thread = None  # idle: let the thread end
                        return
                if self._thread is not me:
                    return
                job = self._queue.pop(0)
                self._current = job
            try:
                self._run(job)
            finally:
                with self._cv:
                    self._current = None
                    self._cv.notify_all()

    def _progress_fn(self, job: Job):
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            job.cancel.check()
            now = time.monotonic()
            if self.on_progress is not None and (done >= total or now - last[0] >= self.min_interval):
                last[0] = now
                self.on_progress(job, stage, done, total)
        return progress

    def _run(self, job: Job) -> None:
        job.outcome = "running"
        t0 = time.perf_counter()
        if self.on_start is not None:
            self.on_start(job)
        try:
            job.cancel.check()
            result = job.work(self._progress_fn(job), job.cancel)
            job.cancel.check()
            if job.apply is not None:
                with self.lock:
                    job.apply(result)
            job.outcome = "done"
        except Cancelled:
            job.outcome = "cancelled"
        except Exception as err:  # noqa: BLE001 - shown to the user, never lost
            job.outcome = "failed"
            job.error = err
            job.traceback = traceback.format_exc()
        job.seconds = time.perf_counter() - t0
        self.history = (self.history + [job])[-50:]
        if self.on_finish is not None:
            self.on_finish(job)
