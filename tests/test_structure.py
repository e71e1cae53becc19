"""The import rules of the package, read from the source (ast), lazy imports included.

Layers, lowest first: errors, costs <- models <- solvers <- estimators (the Learner contract and
the simulation helpers shared by learners and baselines) <- learners, baselines <- check <- train.
A baseline is an independent reference: it never imports a learner, nor a learner a baseline;
check/ knows the contract only. The core imports with torch, numpy and scipy alone. No circle,
neither between subpackages nor between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eqprop

ROOT = Path(eqprop.__file__).parent

# subpackage -> the subpackages it must never import (directly or lazily)
FORBIDDEN = {
    "errors": {"costs", "models", "solvers", "estimators", "learners", "baselines", "check", "train", "data"},
    "costs": {"models", "solvers", "estimators", "learners", "baselines", "check", "train", "data"},
    "models": {"solvers", "estimators", "learners", "baselines", "check", "train", "data"},
    "solvers": {"estimators", "learners", "baselines", "check", "train", "data"},
    "estimators": {"learners", "baselines", "check", "train", "data"},
    "learners": {"baselines", "check", "train", "data"},
    "baselines": {"learners", "check", "train", "data"},
    "check": {"learners", "baselines", "train", "data"},
}
CORE = ("errors", "costs", "models", "solvers", "estimators", "learners", "baselines")
EDGE_ONLY = ("hydra", "omegaconf", "matplotlib")


def module_name(path: Path) -> str:
    parts = ("eqprop",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(absolute module imported, line, at module level) for every import statement in the file."""
    return imports_in(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")


def imports_in(text: str, name: str, is_package: bool) -> list[tuple[str, int, bool]]:
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(text)
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[: len(base) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            if node.module is None:  # from . import a, b: each name may be a module
                found += [(f"{target}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
            else:
                found.append((target, node.lineno, id(node) in top_level))
    return found


def source_files() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "eqprop" and len(parts) > 1 else None


def existing(module: str, modules: set[str]) -> str:
    """The longest prefix of an imported name that is a module of the package (``from x import name``)."""
    while module not in modules and "." in module:
        module = module.rpartition(".")[0]
    return module


def test_subpackages_import_only_downward():
    violations = []
    for path in source_files():
        source = subpackage(module_name(path))
        for target, line, _ in imports_of(path):
            if subpackage(target) in FORBIDDEN.get(source, ()):
                violations.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not violations, "\n".join(violations)


def test_core_needs_no_training_or_plotting_stack():
    violations = []
    for path in source_files():
        source = subpackage(module_name(path))
        for target, line, top in imports_of(path):
            edge = target.split(".")[0] in EDGE_ONLY
            # check/ may plot, inside a function only (matplotlib is an optional extra)
            if edge and (source in CORE or (source == "check" and top)):
                violations.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not violations, "\n".join(violations)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_circle_between_subpackages():
    graph: dict[str, set[str]] = {}
    for path in source_files():
        source = subpackage(module_name(path))
        if source is None:
            continue  # eqprop/__init__.py gathers every subpackage
        for target, _, _ in imports_of(path):
            dest = subpackage(target)
            if dest is not None and dest != source:
                graph.setdefault(source, set()).add(dest)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_circle_between_modules():
    """Module level or lazy, no module reaches itself again (a package __init__ re-exporting its
    own modules is the only back edge left out: it is the package's table of contents)."""
    modules = {module_name(p) for p in source_files()}
    graph: dict[str, set[str]] = {}
    for path in source_files():
        source = module_name(path)
        for target, _, _ in imports_of(path):
            dest = existing(target, modules)
            if dest in modules and dest != source and not (path.name == "__init__.py" and dest.startswith(source + ".")):
                graph.setdefault(source, set()).add(dest)
    # a module importing `pkg.sub` goes through pkg/__init__, which lists pkg's modules: edges down only
    for module in modules:
        graph.setdefault(module, set())
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


@pytest.mark.parametrize("rule", [("baselines", "learners"), ("learners", "baselines"), ("check", "learners")])
def test_the_rules_catch_a_violation(rule):
    """The parser resolves relative imports, lazy or not, so the tests above can fail."""
    source, target = rule
    text = f"from ..{target}.x import a\n\ndef f():\n    from .. import {target}\n"
    hits = [(t, top) for t, _, top in imports_in(text, f"eqprop.{source}.probe", False)]
    assert hits == [(f"eqprop.{target}.x", True), (f"eqprop.{target}", False)]
    assert target in FORBIDDEN[source]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
