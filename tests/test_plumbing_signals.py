"""SIGTERM as an interruption (plumbing/signals.py): a command stops like Ctrl-C and leaves no
empty folder, a commit under way finishes first, and stop_process ends a child that ignores it."""
import os
import select
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- SIGTERM ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explain", "coffee", "--segmenter",
                             "slic", "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # the signal arrives once the work has begun: the first progress bar (no fixed sleep)
    seen, deadline = b"", time.monotonic() + 120
    while b"integrated gradients" not in seen and time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stderr], [], [], 1.0)[0]:
            seen += os.read(proc.stderr.fileno(), 4096)
    assert b"integrated gradients" in seen, seen.decode(errors="replace")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = err.decode(errors="replace").replace("\r", "\n")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated", err
    assert not out.exists()


def test_sigterm_during_a_commit_waits_for_it(tmp_path):
    from hsets_widgets.plumbing.signals import Terminated, signals_deferred, terminate_as_interrupt

    done = []
    with pytest.raises(Terminated), terminate_as_interrupt():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("commit finished")
        done.append("after")
    assert done == ["commit finished"]


def test_stop_process_ends_a_child_that_ignores_sigterm():
    """The servers of `hsets explore`, the browser tests and the benchmarks are stopped this way: a
    child that ignores SIGTERM is killed after the timeout, and an ended one is left alone."""
    import subprocess
    import sys

    from hsets_widgets.plumbing.signals import stop_process

    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout.readline().strip() == "up"
    stop_process(stubborn, timeout=1)
    assert stubborn.wait(timeout=10) == -9
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(polite, timeout=10)
    assert polite.wait(timeout=10) == -15
    stop_process(polite, timeout=10)          # already ended: nothing to do, no error
