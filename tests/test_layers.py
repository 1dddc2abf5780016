"""The import rule of docs/architecture.md, checked on every project file.

The layer table is read from the document itself, so the rule has one written form. Every
import counts, also those inside functions and under `if TYPE_CHECKING:`.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
DEFAULT_LAYER = "command line"                   # a top-level module the table does not name
NO_FUNCTION_IMPORTS = ("data/", "utils/", "models/")
LAZY_LIBRARIES = {"openpyxl", "matplotlib"}      # optional heavy libraries loaded on first use
PATH_FOLDERS = {"tests"}                         # folders on the path of their own modules
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|([^|]*)\|")


class Import(NamedTuple):
    target: str        # the imported name, absolute ('data.arrays', 'numpy')
    line: int
    in_function: bool


class Layer(NamedTuple):
    height: int
    name: str


def layer_table(text: str) -> dict[str, Layer]:
    """Path pattern ('data/', 'main.py') -> its layer, from the table rows that start with a height."""
    table = {}
    for line in text.splitlines():
        row = ROW.match(line)
        if row:
            for pattern in re.findall(r"`([^`]+)`", row.group(3)):
                table[pattern] = Layer(int(row.group(1)), row.group(2))
    return table


def layer_of(path: str, table: dict[str, Layer]) -> Layer:
    """The layer of a file: its own row, else its nearest folder's; unnamed files count as command line."""
    if path in table:
        return table[path]
    folders = [p for p in table if p.endswith("/") and path.startswith(p)]
    if folders:
        return table[max(folders, key=len)]
    return next(layer for layer in table.values() if layer.name == DEFAULT_LAYER)


def imports_of(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import statement of a module's source, relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            name = ".".join([*filter(None, base), *([node.module] if node.module else [])])
            found.extend(Import(f"{name}.{alias.name}", node.lineno, in_function) for alias in node.names)
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def project_files(root: Path) -> dict[str, str]:
    """Module name -> path (relative, '/'-separated) of every .py file of the project."""
    modules = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))]
        for name in files:
            if name.endswith(".py"):
                path = Path(folder, name).relative_to(root).as_posix()
                parts = path[:-3].split("/")
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def resolve(name: str, importer: str, modules: dict[str, str]) -> str | None:
    """The project module an imported name lands in, or None (a library). In tests/, which a test run
    puts on the path, a name is first looked for beside the importer ('helpers')."""
    folder = importer.rpartition(".")[0]
    if folder in PATH_FOLDERS and f"{folder}.{name.split('.')[0]}" in modules:
        name = f"{folder}.{name}"
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name if name and name != importer else None


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, list[Import]]]:
    """Path -> the paths it imports, and path -> all its imports (libraries too)."""
    modules = project_files(root)
    edges, imports = {}, {}
    for module, path in modules.items():
        found = imports_of((root / path).read_text(encoding="utf-8"), module, path.endswith("__init__.py"))
        imports[path] = found
        edges[path] = {modules[t] for t in (resolve(i.target, module, modules) for i in found) if t}
    return edges, imports


def forbidden_edges(edges: dict[str, set[str]], table: dict[str, Layer]) -> list[str]:
    """Each import of a higher layer, or of another layer at the same height."""
    bad = []
    for source, targets in sorted(edges.items()):
        here = layer_of(source, table)
        for target in sorted(targets):
            there = layer_of(target, table)
            if there.height > here.height or (there.height == here.height and there.name != here.name):
                bad.append(f"{source} ({here.name}) imports {target} ({there.name})")
    return bad


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}            # 'open' while on the current path, then 'done'
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    return next((c for node in sorted(edges) if node not in state and (c := visit(node))), None)


def function_imports(imports: dict[str, list[Import]]) -> list[str]:
    """Imports inside functions in data/, utils/ and models/, except the lazily loaded libraries."""
    return [f"{path}:{i.line} imports {i.target} inside a function"
            for path, found in sorted(imports.items()) if path.startswith(NO_FUNCTION_IMPORTS)
            for i in found if i.in_function and i.target.split(".")[0] not in LAZY_LIBRARIES]


TABLE = layer_table(DOC.read_text(encoding="utf-8"))
EDGES, IMPORTS = import_graph(ROOT)


def test_the_table_names_the_layers():
    assert {layer.name for layer in TABLE.values()} >= {"models", "data", "helpers", "records", "training",
                                                          DEFAULT_LAYER}
    assert layer_of("utils/checkpoint.py", TABLE) == layer_of("utils/model_file.py", TABLE)
    assert layer_of("data/errors.py", TABLE).height < layer_of("utils/io.py", TABLE).height


def test_the_scan_sees_the_project():
    assert "data/arrays.py" in EDGES["main.py"] and "engine.py" in EDGES["fold_set.py"]
    assert "models/amgcn.py" in EDGES["models/__init__.py"]          # relative imports resolved
    assert "tests/helpers.py" in EDGES["tests/test_loso.py"]


def test_every_import_follows_the_layers():
    assert forbidden_edges(EDGES, TABLE) == []


def test_no_import_cycle():
    assert find_cycle(EDGES) is None


def test_no_import_inside_a_function_below_training():
    assert function_imports(IMPORTS) == []


def test_a_forbidden_edge_is_caught():
    edges = {"data/arrays.py": {"models/amgcn.py", "data/release.py"}, "models/graph.py": {"utils/io.py"},
             "utils/io.py": {"utils/model_file.py"}, "new_tool.py": {"main.py", "engine.py"}}
    assert forbidden_edges(edges, TABLE) == ["data/arrays.py (data) imports models/amgcn.py (models)",
                                             "utils/io.py (helpers) imports utils/model_file.py (records)"]
    assert layer_of("new_tool.py", TABLE).name == DEFAULT_LAYER


def test_a_cycle_is_caught():
    edges = {"a.py": {"b.py"}, "b.py": {"c.py", "d.py"}, "c.py": {"a.py"}, "d.py": set()}
    assert find_cycle(edges) == ["a.py", "b.py", "c.py", "a.py"]
    assert find_cycle({"a.py": {"b.py"}, "b.py": set()}) is None


def test_an_import_inside_a_function_is_caught():
    source = ("import numpy\nif TYPE_CHECKING:\n    from .arrays import ModelArrays\n"
              "def f():\n    import openpyxl\n    from data import arrays\n")
    found = imports_of(source, "data.release")
    assert found == [Import("numpy", 1, False), Import("data.arrays.ModelArrays", 3, False),
                     Import("openpyxl", 5, True), Import("data.arrays", 6, True)]
    assert function_imports({"data/release.py": found}) == ["data/release.py:6 imports data.arrays inside a function"]
    assert function_imports({"main.py": found}) == []
