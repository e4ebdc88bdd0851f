"""The package's shape, read from the source (pure AST, nothing imported): each layer imports only
the layers below it, modules import each other without cycles, functions stay short, file names
do not repeat across packages, ``train``/``export`` import the package absolutely, and tests import
no other test module (shared code lives in ``tests/helpers``)."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# Where each package's source lies (train/ and export/ are mapped under tsav_deploy by pyproject).
SOURCES = {
    "tsav_deploy": ROOT / "tsav_deploy",
    "tsav_deploy.train": ROOT / "train",
    "tsav_deploy.export": ROOT / "export",
}

# Low to high. A module may import its own layer and the layers below it.
FOUNDATIONS = ("contract", "errors", "failures", "bounds", "atomic", "download", "stages")
LAYERS = [
    FOUNDATIONS,
    ("media",),
    ("faces",),
    ("inputs",),
    ("model",),
    ("artifacts",),
    ("runtime",),
    ("results",),
    ("pipeline",),
    ("outputs",),
    ("api", "train", "export"),
    ("runs",),
    # The service's client stands beside the CLI: a caller's side, over HTTP.
    ("cli", "client"),
]
LAYER = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}

# The package's front door (``tsav_deploy/__init__.py``) names the public API from every layer and
# imports it on first use only; it stands above the layers.
FRONT_DOOR = "tsav_deploy"


MAX_FUNCTION_LINES = 80


# Stems that may repeat across packages: package markers and entry points.
SHARED_STEMS = {"__init__", "__main__"}


def _modules() -> dict[str, pathlib.Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports in the tree; with ``module_level_only``, the ones that run when the module is
    imported (not inside functions, not under ``if TYPE_CHECKING``)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            elif module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            elif module_level_only and isinstance(child, ast.If) and _type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str) -> str | None:
    """The package module an imported name resolves to (its nearest enclosing module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(module: str, module_level_only: bool) -> dict[str, int]:
    """The package modules ``module`` imports, with the first line each is imported on."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found: dict[str, int] = {}
    for node in _imports(tree, module_level_only):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = _absolute(module, node)
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _known(name)
            if target is not None and target != module:
                found.setdefault(target, node.lineno)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if module == FRONT_DOOR:
        return None
    return LAYER[parts[1]]


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if m != FRONT_DOOR and m.split(".")[1] not in LAYER]
    assert not unplaced, f"modules outside every layer (add them to LAYERS): {unplaced}"


def _upward() -> list[tuple[str, str, int]]:
    found = []
    for module in MODULES:
        rank = _layer(module)
        if rank is None:
            continue
        for target, line in _targets(module, module_level_only=False).items():
            target_rank = _layer(target)
            if target_rank is not None and target_rank > rank:
                found.append((module, target, line))
    return found


def test_no_module_imports_a_higher_layer():
    upward = _upward()
    offenders = [
        f"{MODULES[m].relative_to(ROOT)}:{line}: {m} (layer {LAYERS[_layer(m)][0]}) imports {t} (layer {LAYERS[_layer(t)][0]})"
        for m, t, line in upward
    ]
    assert not offenders, "upward imports:\n" + "\n".join(offenders)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The groups of modules that import each other, directly or through others."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted({node} | {n for n in reach[node] if node in reach[n]})) for node in graph if node in reach[node]
    }
    return sorted(groups)


def test_no_import_cycles():
    """Cycles among the imports that run at import time (function-level and ``TYPE_CHECKING``
    imports wait until the modules are loaded)."""
    graph = {m: set(_targets(m, module_level_only=True)) for m in MODULES}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    return walk(tree, "")


def test_no_function_is_longer_than_80_lines():
    long = {}
    for module, path in MODULES.items():
        for name, node in _functions(ast.parse(path.read_text(), str(path))):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - first + 1
            if length > MAX_FUNCTION_LINES:
                long[f"{module}.{name}"] = f"{path.relative_to(ROOT)}:{node.lineno}: {module}.{name} has {length} lines"
    offenders = list(long.values())
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_file_names_do_not_repeat_across_packages():
    """The same file name in two packages (``faces/video.py``, ``results/video_result.py``) reads as the
    same thing; package markers and entry points are exempt."""
    by_stem: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        if not module.startswith("tsav_deploy.cli."):  # a command's module is named after its command
            by_stem.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    repeated = {s: p for s, p in by_stem.items() if len(p) > 1 and s not in SHARED_STEMS}
    offenders = [f"{stem}: {', '.join(paths)}" for stem, paths in sorted(repeated.items())]
    assert not offenders, "file names repeated across packages:\n" + "\n".join(offenders)


def test_train_and_export_import_the_package_absolutely():
    relative = []
    for module, path in MODULES.items():
        if not module.startswith(("tsav_deploy.train", "tsav_deploy.export")):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                relative.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not relative, "relative imports (use tsav_deploy.…):\n" + "\n".join(relative)


def test_tests_import_no_test_module():
    """Tests share code through ``tests/helpers`` only."""
    test_modules = {p.stem for p in TESTS.glob("test_*.py")} | {"conftest"}
    offenders = []
    for path in sorted(TESTS.rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                head = name.split(".")[0]
                if head in test_modules or (head == "tests" and not name.startswith("tests.helpers")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}")
    helpers = sorted(p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py")
    assert not offenders, "imports of test modules:\n" + "\n".join(offenders)
    assert not helpers, f"shared test code outside tests/helpers: {helpers}"


def test_every_package_folder_is_installed():
    """A non-editable install takes only the packages pyproject names: each folder with an
    ``__init__.py`` must be there, or ``pip install .`` leaves that part out."""
    import tomllib

    named = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in SOURCES.items():
        for marker in folder.rglob("__init__.py"):
            parts = marker.parent.relative_to(folder).parts
            found.add(".".join((package, *parts)))
    assert found == named, f"not installed: {sorted(found - named)}; named but absent: {sorted(named - found)}"
