"""The package's layering, read from its source: dependencies point one way (widgets and CLI
over the engine, never back) and no module reaches into another object's private names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hsets_widgets"
MODULES = sorted(p for p in PKG.rglob("*.py"))

#: private names of *other libraries* the package has to touch, each for a stated reason
THIRD_PARTY = {
    ("hessian.py", "_decomp"),            # torch registers its jvp decompositions on import
    ("curvature.py", "_C"),               # torch's functional relu entry points, to catch them
    ("curvature.py", "_nn"),
    ("forward.py", "_C"),                 # torch's functorch interpreter stack: inside vmap/grad/jvp
    ("forward.py", "_functorch"),
    ("forward.py", "_version"),           # a tensor's in-place version counter: changed weights
    ("evaluation/datasets.py", "_ARCHIVES"),  # torchvision's Imagenette URL, for the offline hint
    ("segmentation/sam.py", "_registry"),  # timm's registry, to refuse a wrong SAM backbone
    ("widgets/common.py", "_caching"),    # ipycanvas' command batching, made thread-safe
    ("widgets/common.py", "_commands_cache"),
    ("widgets/common.py", "_buffers_cache"),
}
#: an object's own class may set its own private attributes on a copy of itself
SAME_CLASS = {("explain.py", "new")}


def _rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


def private_reads(path: Path, rel: str | None = None) -> list:
    """``(line, text)`` of every ``obj._name`` whose ``obj`` is not ``self`` / ``cls``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel, found = rel or _rel(path), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Name) and (rel, owner.id) in SAME_CLASS:
                continue
            if (rel, node.attr) in THIRD_PARTY:
                continue
            found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("hsets_widgets")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((node.lineno, f"from {node.module or '.'} import {alias.name}"))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_module_reads_another_objects_private_names(path):
    assert private_reads(path) == [], f"{_rel(path)} reads private names of other objects"


def test_the_private_name_check_finds_a_private_read(tmp_path):
    # the check itself must be able to fail
    probe = tmp_path / "probe.py"
    probe.write_text("from .explain import _DTYPES\n\ndef f(explainer):\n    return explainer._rows\n")
    assert sorted(private_reads(probe, "widgets/probe.py")) == [
        (1, "from explain import _DTYPES"), (4, "explainer._rows")]


def _imports(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel_pkg = ["hsets_widgets"] + list(path.relative_to(PKG).parent.parts)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel_pkg[: len(rel_pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


ENGINE = [p for p in MODULES if _rel(p).split("/")[0] not in ("widgets", "cli", "evaluation")
          and _rel(p) != "__init__.py"]


@pytest.mark.parametrize("path", ENGINE, ids=_rel)
def test_the_engine_never_imports_widgets_cli_or_evaluation(path):
    bad = {m for m in _imports(path)
           if m.startswith(("hsets_widgets.widgets", "hsets_widgets.cli", "hsets_widgets.evaluation",
                            "ipywidgets", "ipycanvas", "bqplot"))}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"
