"""The package's layering rules (DESIGN.md §1), checked on the source with ``ast``.

- No underscored name is imported across modules (what another module needs is public there).
  Private *modules* (``_kernels``, ``_validation``, ``io._layout`` ...) may be imported from, but
  only their public names.
- Imports go downward: ``_kernels`` imports only numpy, numba, math and itself; ``topology``
  imports no monitors, io, integrations, app, report or guard; no module imports torch at module
  level outside ``integrations/``, ``compat/`` and ``app/`` (elsewhere torch is imported inside
  the function that needs it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "streamtopo"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(ROOT.rglob("*.py"))


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> list[tuple[ast.stmt, str, list[str], bool]]:
    """(node, absolute module, imported names, at module level) for every import in ``path``."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[ast.stmt, str, list[str], bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for a in child.names:
                    out.append((child, a.name, [], top))
            elif isinstance(child, ast.ImportFrom):
                names = [a.name for a in child.names]
                out.append((child, _absolute(module, path, child), names, top))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                visit(child, False)  # never executed at run time
            else:
                visit(child, top)

    visit(tree, True)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _where(path: Path, node: ast.stmt) -> str:
    return f"{path.relative_to(ROOT.parent)}:{node.lineno}"


def test_the_walk_sees_the_package():
    names = {_module_name(p) for p in MODULES}
    assert {"streamtopo", "streamtopo._kernels.mst", "streamtopo.topology.h0"} <= names
    assert len(MODULES) > 40


def test_no_underscored_name_is_imported_across_modules():
    bad = []
    for path in MODULES:
        for node, _, names, _ in _imports(path):
            if isinstance(node, ast.Import):
                continue
            bad += [f"{_where(path, node)} imports {n}" for n in names if _private(n)]
    assert bad == []


def test_no_underscored_attribute_of_an_imported_streamtopo_object_is_read():
    """``module._name`` through an imported module or class is the same leak as importing it."""
    bad = []
    for path in MODULES:
        bound = set()
        for node, mod, _, _ in _imports(path):
            if not mod.startswith("streamtopo"):
                continue
            if isinstance(node, ast.ImportFrom):
                bound |= {a.asname or a.name for a in node.names}
            else:
                bound |= {a.asname or a.name.split(".")[0] for a in node.names}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and _private(node.attr)
            ):
                bad.append(f"{_where(path, node)} reads {node.value.id}.{node.attr}")
    assert bad == []


def test_kernels_import_only_numpy_numba_math():
    allowed = ("numpy", "numba", "math", "__future__", "streamtopo._kernels")
    bad = []
    for path in MODULES:
        if not _module_name(path).startswith("streamtopo._kernels"):
            continue
        for node, mod, _, _ in _imports(path):
            if not any(mod == a or mod.startswith(a + ".") for a in allowed):
                bad.append(f"{_where(path, node)} imports {mod}")
    assert bad == []


@pytest.mark.parametrize(
    "upper",
    ["monitors", "io", "integrations", "app", "compat", "report", "guard", "ring", "status"],
)
def test_topology_does_not_import_upward(upper):
    bad = []
    for path in MODULES:
        if not _module_name(path).startswith("streamtopo.topology"):
            continue
        for node, mod, names, _ in _imports(path):
            targets = [mod] + [f"{mod}.{n}" for n in names]
            hit = [
                t
                for t in targets
                if t == f"streamtopo.{upper}" or t.startswith(f"streamtopo.{upper}.")
            ]
            if hit:
                bad.append(f"{_where(path, node)} imports {mod} {names}")
    assert bad == []


def test_torch_is_imported_at_module_level_only_where_it_trains():
    allowed = ("streamtopo.integrations", "streamtopo.compat", "streamtopo.app")
    bad = []
    for path in MODULES:
        module = _module_name(path)
        if any(module == a or module.startswith(a + ".") for a in allowed):
            continue
        for node, mod, _, top in _imports(path):
            if top and (mod == "torch" or mod.startswith("torch.")):
                bad.append(f"{_where(path, node)} imports {mod} at module level")
    assert bad == []


def test_the_checks_catch_a_violation(tmp_path):
    """The walker sees relative, nested and TYPE_CHECKING imports for what they are."""
    pkg = tmp_path / "streamtopo" / "monitors"
    pkg.mkdir(parents=True)
    src = pkg / "x.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..topology.h0 import _private, public\n"
        "import torch\n"
        "if TYPE_CHECKING:\n"
        "    import torch.nn\n"
        "def f():\n"
        "    import torch.optim\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path / "streamtopo"
    try:
        found = [(mod, names, top) for _, mod, names, top in _imports(src)]
    finally:
        ROOT = saved
    assert found == [
        ("typing", ["TYPE_CHECKING"], True),
        ("streamtopo.topology.h0", ["_private", "public"], True),
        ("torch", [], True),
        ("torch.nn", [], False),
        ("torch.optim", [], False),
    ]
