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
    ("hsets/hessian.py", "_decomp"),            # torch registers its jvp decompositions on import
    ("hsets/curvature.py", "_C"),               # torch's functional relu entry points, to catch them
    ("hsets/curvature.py", "_nn"),
    ("model/forward.py", "_C"),                 # torch's functorch interpreter stack: inside vmap/grad/jvp
    ("model/forward.py", "_functorch"),
    ("model/forward.py", "_version"),           # a tensor's in-place version counter: changed weights
    ("runs/datasets.py", "_ARCHIVES"),  # torchvision's Imagenette URL, for the offline hint
    ("segmentation/sam.py", "_registry"),  # timm's registry, to refuse a wrong SAM backbone
    ("widgets/common.py", "_caching"),    # ipycanvas' command batching, made thread-safe
    ("widgets/common.py", "_commands_cache"),
    ("widgets/common.py", "_buffers_cache"),
}
#: an object's own class may set its own private attributes on a copy of itself
SAME_CLASS = {("hsets/explain.py", "new")}


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


def _imports(path: Path, rel: str | None = None) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel_pkg = ["hsets_widgets"] + list(Path(rel or _rel(path)).parent.parts)
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


#: the folders, lowest first: a module imports only from its own folder or a lower one, so the
#: H-Sets steps never reach the comparison methods, metrics never reach runs, and nothing but
#: widgets and the CLI sees the notebook libraries (docs/architecture.md draws the same order)
LAYERS = {"plumbing": 0, "segmentation": 1, "model": 2, "hsets": 3, "methods": 4, "metrics": 5, "runs": 6,
          "widgets": 7, "cli": 7}
WIDGET_LIBRARIES = ("ipywidgets", "ipycanvas", "bqplot", "traitlets", "IPython")


def _folder(module: str):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hsets_widgets" else None


def upward_imports(path: Path, rel: str | None = None) -> list:
    """The imports of ``path`` that reach a higher folder than its own, or a notebook library
    from outside widgets/CLI."""
    rel = rel or _rel(path)
    folder = rel.split("/")[0]
    if folder not in LAYERS:
        return []
    bad = []
    for m in sorted(_imports(path, rel)):
        other = _folder(m)
        if other in LAYERS and LAYERS[other] > LAYERS[folder]:
            bad.append(m)
        if LAYERS[folder] < LAYERS["widgets"] and m.split(".")[0] in WIDGET_LIBRARIES:
            bad.append(m)
    return bad


def test_every_folder_has_a_layer():
    folders = {p.parent.relative_to(PKG).as_posix() for p in MODULES if p.parent != PKG}
    assert folders == set(LAYERS), "a new folder needs its place in LAYERS (and in docs/architecture.md)"


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent != PKG], ids=_rel)
def test_no_module_imports_a_higher_folder(path):
    assert upward_imports(path) == [], f"{_rel(path)} imports upward"


def test_the_upward_import_check_finds_one(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ..runs.runner import run_evaluation\nimport ipywidgets\nfrom .seeds import Seed\n")
    assert upward_imports(probe, "hsets/probe.py") == ["hsets_widgets.runs.runner",
                                                        "hsets_widgets.runs.runner.run_evaluation", "ipywidgets"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    return ".".join(["hsets_widgets"] + (parts[:-1] if parts[-1] == "__init__" else parts))


def import_graph(paths) -> dict:
    """module -> the package modules it imports (at the top or inside a function: both run)."""
    names = {_module_name(p): p for p in paths}
    graph = {}
    for name, path in names.items():
        graph[name] = set()
        for m in _imports(path):
            while m and m not in names:
                m = m.rpartition(".")[0]
            if m and m != name and not name.startswith(m + "."):   # a package's own __init__ is no edge
                graph[name].add(m)
    return graph


def import_circles(graph: dict) -> list:
    """Every set of modules that import each other in a circle (Tarjan's components)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert import_circles(import_graph(MODULES)) == []


def test_the_circle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]


#: the longest a function's code may run (its docstring not counted) without a stated reason
MAX_FUNCTION_LINES = 60
LONG_REASON = "# long:"


def long_functions(path: Path) -> list:
    """``(line, name, code lines)`` of each function longer than :data:`MAX_FUNCTION_LINES`
    that does not say why in a ``# long: <reason>`` comment on the line above its ``def``."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str) and len(body) > 1:
            body = body[1:]
        start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        n = (body[0].lineno - node.lineno) + (body[-1].end_lineno - body[0].lineno + 1)
        if node.body is not body:      # the signature counts, the docstring does not
            n -= node.body[0].end_lineno - node.body[0].lineno + 1
        reason = lines[start - 2].strip() if start >= 2 else ""
        if n > MAX_FUNCTION_LINES and not reason.startswith(LONG_REASON):
            found.append((node.lineno, node.name, n))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_no_function_is_long_without_a_reason(path):
    assert long_functions(path) == [], f"{_rel(path)}: split these, or say why above the def ({LONG_REASON} ...)"


def test_the_length_check_counts_code_not_docstrings(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    doc = '    """' + "doc\n" * 30 + '    """\n'
    probe = tmp_path / "probe.py"
    probe.write_text(f"def short():\n{doc}{body[:-1 - len(str(MAX_FUNCTION_LINES - 1)) - 9]}\n"
                     f"def long():\n{body}    return 0\n"
                     f"{LONG_REASON} a reason\ndef excused():\n{body}    return 0\n")
    assert [name for _, name, _ in long_functions(probe)] == ["long"]
