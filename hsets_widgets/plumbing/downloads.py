"""The one gate every download passes: ``$HSETS_OFFLINE`` forbids them all.

The segmentation assets (:mod:`~hsets_widgets.segmentation.assets`), torchvision's weights
(:mod:`~hsets_widgets.model.models`) and Imagenette (:mod:`~hsets_widgets.runs.datasets`)
each call :func:`require_online` before fetching anything, so a machine that must not reach
the network gets one clear error naming the file and the offline way to provide it.
"""
from __future__ import annotations

import os

#: set (to anything but 0/false/no) to forbid every download
OFFLINE_ENV = "HSETS_OFFLINE"


class DownloadsOff(OSError):
    """A download was needed while ``$HSETS_OFFLINE`` forbids it."""


def offline() -> bool:
    """True when ``$HSETS_OFFLINE`` forbids network access."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def require_online(what: str, fix: str) -> None:
    """Raise :class:`DownloadsOff` (saying what would have been downloaded and ``fix``, the
    offline way to provide it) when downloads are off; do nothing otherwise.
    """
    if offline():
        raise DownloadsOff(f"not downloading {what}: downloads are off ({OFFLINE_ENV} is set). {fix}")
