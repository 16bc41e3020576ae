"""Rules that keep the code safe to change, checked on the source: Dagster's public API only, no
import cycle inside the package, and asset functions that read as orchestration."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fraud_assets"
MAX_ASSET_LINES = 60
ASSET_DECORATORS = {"asset", "multi_asset", "graph_asset", "graph_multi_asset"}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), filename=str(path))
    return found


def imports_of(name: str, tree: ast.Module) -> set[str]:
    """Every module `name` imports, at its top or inside a function (imported where used is still a
    dependency: a cycle through it breaks as soon as someone moves the import up), except under
    `if TYPE_CHECKING:`."""
    package = name if name in _PACKAGES else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    type_checking = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for child in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - (node.level - 1)], *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return targets


_PACKAGES = {".".join(p.relative_to(PACKAGE.parent).parts[:-1]) for p in PACKAGE.rglob("__init__.py")}


def test_no_private_dagster_imports():
    offenders = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{name}:{node.lineno} imports {n}" for n in names if n == "dagster._core" or n.startswith("dagster._")]
    assert not offenders, "Dagster's private modules change without notice; import from `dagster`:\n" + "\n".join(offenders)


def test_no_module_of_the_package_imports_the_local_stack():
    """The code location never reaches `fraud_assets_local` (the image leaves it out, test_image.py):
    the CLI names it only as a string, in the commands that start it (cli._local)."""
    offenders = [
        f"{name} imports {target}"
        for name, tree in modules().items()
        for target in imports_of(name, tree)
        if target.split(".")[0] == "fraud_assets_local" or target.startswith("fraud_assets.local")
    ]
    assert offenders == []


def test_no_import_cycle_inside_the_package():
    trees = modules()
    graph = {name: {t for t in imports_of(name, tree) if t in trees and t != name} for name, tree in trees.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_asset_functions_read_as_orchestration():
    long = []
    for name, tree in modules().items():
        if not name.startswith("fraud_assets.defs"):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            decorators = {
                (d.func if isinstance(d, ast.Call) else d).id if isinstance(d.func if isinstance(d, ast.Call) else d, ast.Name) else ""
                for d in node.decorator_list
            }
            if decorators & ASSET_DECORATORS:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_ASSET_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, f"asset functions over {MAX_ASSET_LINES} lines (move decisions into lib/):\n" + "\n".join(long)


def test_the_rules_see_what_they_check(tmp_path):
    # The scanner finds a cycle and a long asset where there is one: the tests above cannot pass vacuously.
    assert "fraud_assets.defs.training.assets" in modules()
    tree = ast.parse(
        "def f():\n    from .io_manager import X\nimport fraud_assets.lib.config\nif TYPE_CHECKING:\n    import fraud_assets.cli\n"
    )
    assert imports_of("fraud_assets.defs.resources", tree) == {
        "fraud_assets.defs.io_manager",
        "fraud_assets.defs.io_manager.X",
        "fraud_assets.lib.config",
    }


def test_project_rules_reach_every_asset_from_the_root():
    # Owners and group are declared once (definitions.py), not per asset: every asset still has
    # them, with a description and kinds of its own.
    from fraud_assets.definitions import defs
    from fraud_assets.defs.common import DOMAINS, OWNERS

    graph = defs().get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert list(node.owners) == OWNERS and node.group_name in DOMAINS, key
        assert node.description and node.kinds, key
    sites = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in (PACKAGE / "defs").rglob("*.py")
        if path.name != "common.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "owners=OWNERS" in line or "group_name=" in line
    ]
    assert not sites, f"owners/group set per asset again: {sites}"
