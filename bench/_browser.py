"""Driving ``hsets explore`` in headless Chromium: what bench_widgets.py and docs/tour/make_tour.py
share (start the app on a free port, wait for it, read and wait for text on the page).
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

#: Chromium for playwright (the Debian package unless ``$HSETS_TEST_CHROMIUM`` names another)
CHROMIUM = os.environ.get("HSETS_TEST_CHROMIUM", "/usr/bin/chromium")
#: what a page waits for at most: a cold start on a loaded 2-core machine takes minutes
PAGE_TIMEOUT = 1800.0


def start_explore(options: list, log_name: str, cwd=None) -> tuple:
    """Start ``hsets explore --no-browser --no-token`` with ``options`` on a free port, its output
    into ``$TMPDIR/log_name``; returns ``(process, url)`` (stop it with ``stop_process``).
    """
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    log = open(Path(tempfile.gettempdir()) / log_name, "w")
    proc = subprocess.Popen([sys.executable, "-m", "hsets_widgets.cli.main", "explore", "--no-browser", "--no-token",
                             "--port", str(port), *options],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=cwd)
    return proc, f"http://127.0.0.1:{port}/"


def wait_served(url: str, proc=None, poll: float = 0.3) -> None:
    """Return once the app's server answers (raises if ``proc`` ended first)."""
    while True:
        try:
            urllib.request.urlopen(url + "voila/static/favicon.ico", timeout=2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"hsets explore exited with {proc.returncode} before serving {url}") from None
            time.sleep(poll)


def text(page, css: str) -> str:
    """The text of the first element matching ``css`` ("" while it is not rendered)."""
    try:
        return page.locator(css).first.inner_text().replace("\xa0", " ")
    except Exception:  # noqa: BLE001 - not rendered yet
        return ""


def until(page, css: str, pattern: str, timeout: float = PAGE_TIMEOUT, poll_ms: int = 100) -> float:
    """Wait until the text of ``css`` matches ``pattern``; returns ``time.perf_counter()`` then."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if re.search(pattern, text(page, css)):
            return time.perf_counter()
        page.wait_for_timeout(poll_ms)
    raise TimeoutError(f"{css} never matched {pattern!r}")
