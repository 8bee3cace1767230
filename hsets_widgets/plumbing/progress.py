"""Progress reporting and cancellation shared by every long computation.

Every function of the package that can take long takes ``progress`` (a callable
``progress(stage, done, total)``, or None for silence) and, where it can stop early,
``cancel`` (a :class:`CancelToken`, or None): the engine, the segmenters, the asset fetcher
and the evaluation runner alike. The CLI passes a :class:`TqdmProgress`, the widgets a
progress bar and a cancel button; the engine knows about neither.
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


def check_progress(progress) -> Optional[ProgressFn]:
    """``progress`` itself if it is None or callable; a clear error otherwise (``True``/``False``
    are not progress reporters: pass ``TqdmProgress()`` for bars, None for silence).
    """
    if progress is None or (callable(progress) and not isinstance(progress, bool)):
        return progress
    raise TypeError(f"progress must be None or a callable progress(stage, done, total), got "
                    f"{progress!r}; for tqdm bars pass hsets_widgets.plumbing.progress.TqdmProgress()")


def report(progress: Optional[ProgressFn], stage: str, done: int, total: int,
           cancel: Optional[CancelToken] = None) -> None:
    """Tell ``progress`` how far ``stage`` is and honour ``cancel``."""
    if cancel is not None:
        cancel.check()
    if progress is not None:
        progress(stage, done, total)


class TqdmProgress:
    """A ``progress`` callable that shows one tqdm bar per stage (for the CLI); use it as a
    context manager so an error or a signal clears the bars before its message is printed.
    """

    def __init__(self, disable: bool = False):
        self.disable = disable
        self._bars = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Advance the bar of ``stage`` to ``done`` of ``total``."""
        from tqdm.auto import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            units = (dict(unit="B", unit_scale=True, unit_divisor=1024) if stage.startswith("download")
                     else {})
            bar = self._bars[stage] = tqdm(total=total, desc=stage, leave=False, disable=self.disable,
                                           **units)
        if total != bar.total:
            bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            self._bars.pop(stage, None)

    def postfix(self, stage: str, **values) -> None:
        """Show ``values`` after the bar of ``stage`` (e.g. ``failed=1``), if it is open."""
        bar = self._bars.get(stage)
        if bar is not None:
            bar.set_postfix(values, refresh=True)

    def write(self, line: str) -> None:
        """Print ``line`` above the bars (nothing when they are disabled)."""
        if not self.disable:
            from tqdm.auto import tqdm

            tqdm.write(line)

    def close(self) -> None:
        """Close every bar."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
