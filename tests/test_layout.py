"""The package's layout: small modules and functions, each module named in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "rednet"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_600_lines():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_100_lines():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert long == {}


def test_every_module_is_named_in_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for path in _modules():
        relative = path.relative_to(PACKAGE).as_posix()
        named = relative if "/" in relative else relative.removesuffix(".py")
        if f"`{named}" not in page:
            missing.append(relative)
    assert missing == []


def test_the_readme_links_the_architecture_page():
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
