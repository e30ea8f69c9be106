"""The import layering the packages promise, read from the source with `ast` (nothing is imported):

- `deepdiff` (the library) imports nothing from `deepdiff_study`, at any level;
- no import circle among the modules of either package (module-level imports: those that run on import);
- the study report only reads: `deepdiff_study.report` imports no Ray (at any level), no torch at module
  level (not through another module either), and no module above it in deepdiff_study's layer list.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

import deepdiff_study

ROOT = Path(__file__).resolve().parents[1]
# Where each package's modules live (deepdiff_study.ablations is ablations/, pyproject's package-dir).
PACKAGE_DIRS = {"deepdiff": ROOT / "deepdiff", "deepdiff_study": ROOT / "deepdiff_study",
                "deepdiff_study.ablations": ROOT / "ablations"}
REPORT = "deepdiff_study.report"
# Modules above the report: every module deepdiff_study's docstring lists after `report` (`above_report`),
# and these, which the list does not name. Edit here when modules are renamed, added or moved.
ABOVE_REPORT_UNLISTED = ("replicates",)
NEVER_IN_REPORT = ("ray",)  # at any level
NOT_ON_REPORT_IMPORT = ("torch", "ray")  # at module level, directly or through any module it imports


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


class _Imports(ast.NodeVisitor):
    """(imported module, at module level?) for every import statement of one module."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, bool]] = []
        self.depth = 0  # inside a function (runs at call time) or an `if TYPE_CHECKING:` block (never runs)

    def _nested(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            self._nested(node)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, self.depth == 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:  # `from pkg import module` imports the module
            target = f"{base}.{alias.name}"
            self.found.append((target if target in MODULES else base, self.depth == 0))


@functools.cache
def imports(module: str) -> list[tuple[str, bool]]:
    path = MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _project(name: str) -> str | None:
    """The module of the two packages that `import name` loads (itself or its nearest known parent)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def module_level_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports when it is imported."""
    mine = [m for m in MODULES if _within(m, package)]
    graph = {m: set() for m in mine}
    for m in mine:
        for name, top in imports(m):
            target = _project(name)
            if top and target is not None and _within(target, package) and target != m:
                graph[m].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def above_report() -> set[str]:
    """deepdiff_study's modules above the report: those its docstring's layer list names after `report`."""
    listed = re.findall(r"^- `(\w+)`", deepdiff_study.__doc__, flags=re.MULTILINE)
    return {f"deepdiff_study.{m}" for m in listed[listed.index("report") + 1:]} | {
        f"deepdiff_study.{m}" for m in ABOVE_REPORT_UNLISTED}


def report_modules() -> list[str]:
    return [m for m in MODULES if _within(m, REPORT)]


def test_the_library_imports_nothing_of_the_study():
    wrong = [(m, name) for m in MODULES if _within(m, "deepdiff") and not _within(m, "deepdiff_study")
             for name, _ in imports(m) if _within(name, "deepdiff_study")]
    assert wrong == []


@pytest.mark.parametrize("package", ["deepdiff", "deepdiff_study"])
def test_no_import_circle(package):
    assert find_cycle(module_level_graph(package)) is None


def test_the_circle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_rules_name_modules_that_exist():
    """A module renamed or split would otherwise leave a rule that checks nothing."""
    assert report_modules() and "deepdiff_study.report.load" in MODULES
    assert above_report() and sorted(m for m in above_report() if m not in MODULES) == []


def test_the_report_imports_nothing_above_it_and_no_ray():
    above = above_report()
    wrong = [(m, name) for m in report_modules() for name, _ in imports(m)
             if _project(name) in above or name.split(".")[0] in NEVER_IN_REPORT]
    assert wrong == []


def test_importing_the_report_loads_no_torch_or_ray():
    """Module-level imports of the report, followed through every module of the two packages they load
    (and the packages around them, whose __init__ runs too)."""
    seen, todo, wrong = set(), list(report_modules()), []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parent = module.rpartition(".")[0]
        todo += [parent] if parent else []
        for name, top in imports(module):
            if not top:
                continue
            if name.split(".")[0] in NOT_ON_REPORT_IMPORT:
                wrong.append((module, name))
            elif _project(name) is not None:
                todo.append(_project(name))
    assert "deepdiff_study.records" in seen and "deepdiff.variants" in seen  # it did follow the imports
    assert wrong == []
