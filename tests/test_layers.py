"""The import structure docs/architecture.md describes, read from the source (imports inside functions included):
no import cycle between modules, and toolkit/ never importing recipes/ or apps/ except by name at run time."""

from __future__ import annotations

import ast

from conftest import ROOT

FOLDERS = {"toolkit": "toolkit", "recipes": "toolkit.recipes", "apps": "toolkit.apps"}
# Where toolkit/ looks upward on purpose: the task registry's discovery of the recipes package.
DISCOVERY = {("toolkit.tasks", "toolkit.recipes"), ("toolkit.studio.paths", "toolkit.recipes")}


def modules() -> dict[str, tuple]:
    """{module name: (its path, whether it is a package)} for every Python file of the three folders."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            found[".".join((package, *(parts[:-1] if is_package else parts)))] = (path, is_package)
    return found


def imports_of(name: str, path, is_package: bool, known: set) -> set[str]:
    """The modules of ours that ``name`` imports anywhere in its file (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text())
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    here = name.split(".") if is_package else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            candidates = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            # A module's own packages are imported before it, whatever it imports: not an edge of its own.
            if candidate and candidate != name and not name.startswith(candidate + "."):
                targets.add(candidate)
    return targets


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, package, set(found)) for name, (path, package) in found.items()}


def test_no_module_imports_itself_back_through_others():
    graph = import_graph()
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_toolkit_imports_no_recipe_and_no_app():
    upward = [
        (name, target)
        for name, targets in import_graph().items()
        if not name.startswith(("toolkit.recipes", "toolkit.apps"))
        for target in targets
        if target.startswith(("toolkit.recipes", "toolkit.apps")) and (name, target) not in DISCOVERY
    ]
    assert not upward, f"toolkit/ imports a layer above it: {upward}"
