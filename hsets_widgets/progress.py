"""Progress reporting and cancellation shared by every long computation.

Engine functions take ``progress`` (a callable ``progress(stage, done, total)``, or None)
and ``cancel`` (a :class:`CancelToken`, or None). The CLI passes a tqdm reporter, the
widgets a progress bar and a cancel button; the engine knows about neither.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

ProgressFn = Callable[[str, int, int], None]


class Cancelled(Exception):
    """Raised inside a computation whose :class:`CancelToken` was cancelled."""


class CancelToken:
    """A flag a user interface sets to stop a running computation at its next check."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the computation to stop at its next check."""
        self._event.set()

    def reset(self) -> None:
        """Clear a cancellation so the token can be used again."""
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        """Whether cancellation was asked for."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was asked for."""
        if self._event.is_set():
            raise Cancelled("computation cancelled")


def report(progress: Optional[ProgressFn], stage: str, done: int, total: int,
           cancel: Optional[CancelToken] = None) -> None:
    """Tell ``progress`` how far ``stage`` is and honour ``cancel``."""
    if cancel is not None:
        cancel.check()
    if progress is not None:
        progress(stage, done, total)


class TqdmProgress:
    """A ``progress`` callable that shows one tqdm bar per stage (for the CLI)."""

    def __init__(self, disable: bool = False):
        self.disable = disable
        self._bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Advance the bar of ``stage`` to ``done`` of ``total``."""
        from tqdm.auto import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, leave=False, disable=self.disable)
        if total != bar.total:
            bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            self._bars.pop(stage, None)

    def close(self) -> None:
        """Close every bar."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
