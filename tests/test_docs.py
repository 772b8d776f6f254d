"""The documentation and house rules stay true: links resolve, named tests exist, the layout lists
every module, imports run one way, no function is over 60 lines, no module over 300."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")
TEST_REF = re.compile(r"(tests/(?:\w+/)*test_\w+\.py)::(test_\w+)")


def test_the_docs_pages_exist():
    names = {p.name for p in PAGES}
    assert {"study.md", "data.md", "export-and-predict.md", "guarantees.md", "architecture.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = page.read_text()
    targets = [t for t in LINK.findall(text) if not t.startswith(("http://", "https://"))]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_every_test_a_guarantee_names_exists():
    refs = TEST_REF.findall((ROOT / "docs" / "guarantees.md").read_text())
    assert len(refs) >= 30
    for path, name in refs:
        tree = ast.parse((ROOT / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"docs/guarantees.md names {path}::{name}, which does not exist"


def imported_modules(tree: ast.AST) -> list[str]:
    """The ``search`` modules a module imports by ``from ... import``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "search":
            names = [f"search.{a.name}" for a in node.names] if node.module == "search" else [node.module]
            found += names
    return found


def test_imports_in_search_never_run_upwards():
    """Commands import stages, stages import results and runtime; the leaves import nothing of search."""
    rank = {"search.stages": 1, "search.results": 2, "search.runtime": 3}
    leaves = {"search.roles", "search.space", "search.errors"}

    def layer(name: str) -> int:
        return rank.get(name, rank.get(name.rpartition(".")[0], 0))

    for module in sorted((ROOT / "search").rglob("*.py")):
        name = ".".join(module.relative_to(ROOT).with_suffix("").parts)
        for target in imported_modules(ast.parse(module.read_text())):
            assert name not in leaves, f"{name} is a leaf but imports {target}"
            assert target in leaves or layer(target) >= layer(name), f"{name} imports {target}, a layer above it"


def test_the_architecture_page_lists_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for package in ("data", "model", "search", "benchmarks"):
        for module in sorted((ROOT / package).rglob("*.py")):
            if module.name != "__init__.py":
                where = module.relative_to(ROOT)
                assert f"`{module.name}`" in text, f"docs/architecture.md does not list {where}"


def test_no_function_is_longer_than_60_lines():
    long = []
    for package in ("data", "model", "search"):
        for module in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(module.read_text())):
                if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{module.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"functions over 60 lines: {long}"


def test_no_module_is_longer_than_300_lines():
    long = [
        f"{module.relative_to(ROOT)} ({n} lines)"
        for package in ("data", "model", "search")
        for module in sorted((ROOT / package).rglob("*.py"))
        if (n := len(module.read_text().splitlines())) > 300
    ]
    assert not long, f"modules over 300 lines: {long}"
