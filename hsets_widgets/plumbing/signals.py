"""Stopping on request: SIGTERM handled like Ctrl-C, and short commits that a signal waits for.

``kill``, ``timeout`` and job schedulers send SIGTERM, whose default is to end the process at
once, between any two writes. :func:`terminate_as_interrupt` turns it into a
:class:`Terminated` exception (a ``KeyboardInterrupt``), so the cleanup that Ctrl-C already gets
(temporary files removed, one line printed) runs for it too. :func:`signals_deferred` holds
SIGINT and SIGTERM back for a few renames, so a folder of outputs is never left half replaced.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

#: the signals that ask a run to stop
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop with SIGTERM."""


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


def _main_thread() -> bool:
    # signal handlers and masks can only be set from the main thread
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated`; the old handler comes back after."""
    if not _main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back inside the block; one that arrived is delivered at its end.

    For short commits only (a few renames): a signal waits for the block, never longer. The
    handlers are swapped rather than the signals masked, because a signal sent to the process
    may reach any of torch's threads, while Python runs every handler in the main thread.
    """
    if not _main_thread():
        yield
        return
    caught = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in caught:
            signal.raise_signal(s)           # now, to the handler it would have met


def stop_process(proc, timeout: float = 30.0) -> None:
    """Stop a child process politely: SIGTERM, then SIGKILL if it has not ended in ``timeout`` s."""
    import subprocess

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
