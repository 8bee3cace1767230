"""The heap policy: a pass's freed tensors are reused by the next pass instead of faulted anew."""
import os
import subprocess
import sys

import pytest

from hsets_widgets.plumbing.heap import TIGHT_LIMIT, keep_freed_memory
from hsets_widgets.plumbing.memory import container_limit

# a 64 MB tensor filled again and again: under the policy a later fill reuses its pages (the
# fewest faults of three fills), without it every fill faults them anew
SCRIPT = """
import resource, torch, hsets_widgets
from hsets_widgets.plumbing.memory import release_freed_memory
def fill():
    t = torch.ones(16 << 20)
    del t
def faults_of_a_fill():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fill()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
fill()
fill()
print(min(faults_of_a_fill() for _ in range(3)))
release_freed_memory()
print(faults_of_a_fill())
"""


def _faults(heap):
    env = {**os.environ, "HSETS_HEAP": heap}
    env.pop("HSETS_MEMORY_BUDGET", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return [int(n) for n in out.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.skipif((container_limit() or 1 << 62) <= TIGHT_LIMIT, reason="a tight container keeps the defaults")
def test_a_freed_tensor_is_reused_without_faulting_its_pages_again():
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    reused, after_trim = _faults("")
    assert reused < 0.05 * pages                 # a later fill reuses the freed block
    assert after_trim > 0.9 * pages              # release_freed_memory still gives it back
    system, _ = _faults("system")
    assert system > 0.9 * pages                  # the C library's default maps it anew


def test_system_keeps_the_c_library_defaults(monkeypatch):
    import hsets_widgets.plumbing.heap as heap

    monkeypatch.setattr(heap, "_applied", None)
    assert keep_freed_memory({"HSETS_HEAP": "system"}) is False
    assert keep_freed_memory({}) is False        # the first call decides, as documented
    monkeypatch.setattr(heap, "_applied", None)
    assert keep_freed_memory({"HSETS_MEMORY_BUDGET": "2G"}) is False   # tight memory: the defaults
    if sys.platform.startswith("linux"):
        monkeypatch.setattr(heap, "_applied", None)                     # unless asked to keep
        assert keep_freed_memory({"HSETS_HEAP": "keep", "HSETS_MEMORY_BUDGET": "2G"}) is True
