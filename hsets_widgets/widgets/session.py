"""What the Explorer keeps across a page reload: settings, the seed and the kept sets.

A Voila page that reloads gets a new kernel (the old one is shut down when its page goes), so
what the user did lives in two small files in a session folder, written atomically whenever it
changes: ``explorer-session.json`` (the growth settings, the current seed, which image and
model they belong to) and ``explorer-session-sets.npz`` (the kept sets, as the engine's
:class:`~hsets_widgets.hsets.explanation.Explanation` file, so they come back without regrowing).
A new Explorer on the same image and model restores them when it starts and again when a
page connects to it (a pre-started kernel was built before the user's last change). Files
for another image or model are ignored. Saving starts only once a page has shown the
Explorer, so a kernel started in advance never overwrites what a user did.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..hsets.explanation import Explanation
from ..plumbing.files import write_json

STATE_FILE = "explorer-session.json"
SETS_FILE = "explorer-session-sets.npz"
#: the settings a session keeps (traits of ExplorerState)
SETTINGS = ("mu", "nu", "threshold", "sign", "order")


def identity(explainer) -> str:
    """What a session belongs to: the image, the model, the explained class and the preset."""
    h = hashlib.sha1(np.ascontiguousarray(explainer.image, dtype=np.float32).tobytes())
    h.update(repr((explainer.classifier.name, int(explainer.target), explainer.config.preset,
                   explainer.config.features, tuple(explainer.shape))).encode())
    return h.hexdigest()


class Session:
    """The session folder of one Explorer (see the module docstring).

    Parameters
    ----------
    folder : path
        Created if missing.
    state : ExplorerState
    """

    def __init__(self, folder, state):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.id = identity(state.explainer)
        self.active = False          # saving starts once a page has shown the Explorer
        self.applied_mtime = None    # mtime of the state file last restored or written here
        self.n_saved = 0
        self._sets_written = None    # the kept sets last written (identity check)
        self._pending_sets = None    # restored sets waiting for the state to be ready
        state.observe(lambda ch: self.save(), names=list(SETTINGS) + ["seed", "sets"])
        state.observe(self._ready, names=["ready"])

    @property
    def state_path(self) -> Path:
        """The settings and seed (JSON)."""
        return self.folder / STATE_FILE

    @property
    def sets_path(self) -> Path:
        """The kept sets (an Explanation file)."""
        return self.folder / SETS_FILE

    # ---- saving ----------------------------------------------------------------------------
    def activate(self) -> None:
        """A page shows the Explorer: restore what a newer file holds, then save from now on."""
        self.restore(only_newer=True)
        self.active = True

    def save(self) -> None:
        """Write the settings, the seed and (when they changed) the kept sets."""
        if not self.active:
            return
        st = self.state
        with st.lock:
            sets = list(st.sets)
            data = {"identity": self.id, **{k: getattr(st, k) for k in SETTINGS},
                    "seed_yx": list(st.seed.yx) if st.seed is not None else None, "n_sets": len(sets)}
            if sets and [id(s) for s in sets] != self._sets_written and st.ready:
                st.explainer.explanation(sets).save(self.sets_path)
            self._sets_written = [id(s) for s in sets]
        if not sets and self.sets_path.exists():
            self.sets_path.unlink()
        write_json(self.state_path, data)
        self.applied_mtime = self._mtime()
        self.n_saved += 1

    # ---- restoring -------------------------------------------------------------------------
    def load(self) -> Optional[dict]:
        """The saved session of this image and model, or None (no file, another image, unreadable)."""
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("identity") != self.id:
            return None
        sets = []
        if data.get("n_sets"):

            try:
                sets = list(Explanation.load(self.sets_path).sets)
            except Exception:  # noqa: BLE001 - a damaged sets file loses the sets, not the app
                sets = []
        data["sets"] = sets
        return data

    def restore(self, only_newer: bool = False) -> bool:
        """Apply the saved session to the state; ``only_newer``: only if the file changed
        since this Explorer last restored or wrote it. Returns whether anything was applied.
        """
        mtime = self._mtime()
        if mtime is None or (only_newer and self.applied_mtime is not None and mtime <= self.applied_mtime):
            return False
        data = self.load()
        self.applied_mtime = mtime
        if data is None:
            return False
        st = self.state
        was, self.active = self.active, False        # restoring is not a change to save
        try:
            with st.lock:
                for k in SETTINGS:
                    if k in data and getattr(st, k) != data[k]:
                        setattr(st, k, data[k])
                if st.ready or st.explainer.config.paint != "mask":
                    self._set_sets(data["sets"])       # painting needs no segments: show them now
                else:      # painted once the segments are there (never in the page's thread before)
                    self._pending_sets = data["sets"]
                yx = data.get("seed_yx")
                if yx is not None and (st.seed is None or tuple(st.seed.yx) != tuple(yx)):
                    st.select_seed(*yx)
            st.status = f"Restored the session: {len(data['sets'])} kept set(s), mu = {st.mu:g}"
        finally:
            self.active = was
        return True

    def _set_sets(self, sets) -> None:
        self._pending_sets = None
        self.state.sets = list(sets)
        self._sets_written = [id(s) for s in self.state.sets]

    def _ready(self, change) -> None:
        if change["new"] and self._pending_sets is not None:
            with self.state.lock:
                was, self.active = self.active, False
                try:
                    self._set_sets(self._pending_sets)
                finally:
                    self.active = was

    def _mtime(self) -> Optional[float]:
        try:
            return os.stat(self.state_path).st_mtime_ns / 1e9
        except OSError:
            return None
