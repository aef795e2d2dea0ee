"""The tasks module: one home per task, asked instead of string tests; and an import graph with no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from rednet import degrade
from rednet.tasks import TASK_NAMES, TASKS, Blur, kernel_by_name, task_named

SRC = Path(__file__).resolve().parents[1] / "src" / "rednet"

MAX_TASK_NAME_TESTS = 3
"""Outside tasks.py, at most this many string tests of a task name (each with a comment saying why)."""


def _literals(node: ast.AST) -> list[str]:
    """The string constants of a literal, or of a tuple/list/set of literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _literals(e)]
    return []


def _task_ish(node: ast.AST) -> bool:
    """A name or attribute whose name says it holds a task (``task``, ``args.task``, ``self.tasks``)."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "task" in name.lower()


def task_name_tests(source: str) -> list[int]:
    """Line numbers of comparisons of a task-ish name to a task-name string literal in ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            named = any(_task_ish(o) for o in operands)
            if named and any(s in TASK_NAMES for o in operands for s in _literals(o)):
                lines.append(node.lineno)
    return lines


def test_the_counter_finds_string_tests() -> None:
    source = (
        'if args.task == "sr":\n    pass\nok = task in ("denoise", "jpeg")\nx = self.tasks == ["inpaint"]\n'
    )
    assert task_name_tests(source) == [1, 3, 4]
    assert task_name_tests('if method == "sr": pass\nif task.enlarges: pass\n') == []


def test_few_string_tests_of_a_task_name_outside_tasks() -> None:
    found = {
        f"{path.name}:{line}": path
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC) != Path("tasks.py")
        for line in task_name_tests(path.read_text())
    }
    assert len(found) <= MAX_TASK_NAME_TESTS, sorted(found)
    for where, path in found.items():  # each says why, on its line or the two above
        line = int(where.split(":")[1])
        context = path.read_text().splitlines()[max(0, line - 3) : line]
        assert any("task-name test" in text for text in context), where


def _module_imports(path: Path, modules: set[str]) -> set[str]:
    """The rednet modules that ``path`` imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in modules:
            # from rednet import io (a module) or __version__ (the package); so for rednet.cli and its modules
            out |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names
            }
    return out


def module_name(path: Path) -> str:
    """``rednet.cli.restore`` for src/rednet/cli/restore.py; a package is named by its ``__init__``."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the rednet modules it imports, subpackages (rednet.cli) included; ``rednet`` is the package's
    ``__init__``."""
    paths = {module_name(p): p for p in SRC.rglob("*.py")}
    return {name: _module_imports(path, set(paths)) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first = last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert "rednet.tasks" in graph and "rednet.data" in graph["rednet.train"]  # the graph is read
    assert "rednet.cli.restore" in graph["rednet.cli"] and "rednet.cli.flags" in graph["rednet.cli.restore"]
    assert find_cycle(graph) is None


def test_every_task_is_named_and_checks_its_level() -> None:
    assert TASK_NAMES == ("denoise", "sr", "jpeg", "deblur", "inpaint")
    assert all(task_named(n).name == n for n in TASK_NAMES)
    with pytest.raises(ValueError, match="task must be one of"):
        task_named("dehaze")
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        TASKS["sr"].check_level(5)
    with pytest.raises(ValueError, match="quality must be 1..100"):
        TASKS["jpeg"].check_level(0)
    with pytest.raises(ValueError, match="kernel must be"):
        TASKS["deblur"].check_level("box")
    with pytest.raises(ValueError, match="damage rate must be"):
        TASKS["inpaint"].check_level("1.5")


def test_degrade_is_the_recipe_of_each_task() -> None:
    clean = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    noisy = TASKS["denoise"].degrade(clean, 25.0, generator=rng())
    assert torch.equal(noisy.degraded, degrade.gaussian_noise(clean, 25.0, generator=rng()))
    sr = TASKS["sr"].degrade(clean[..., :23, :23], 3, generator=rng())
    assert sr.clean.shape[-2:] == (21, 21) and torch.equal(
        sr.degraded, degrade.bicubic_sr(clean[..., :23, :23], 3)[1]
    )
    small = TASKS["sr"].degrade_file(clean, 3, generator=rng())
    assert small.degraded.shape[-2:] == (8, 8)
    assert TASKS["sr"].pre_restore(small.degraded, 3).shape[-2:] == (24, 24)
    assert torch.equal(TASKS["jpeg"].pre_restore(clean, 10), clean)
    blur = Blur(kernel_by_name("disk"), 2.55)
    blurred = TASKS["deblur"].degrade(clean, blur, generator=rng())
    assert torch.equal(blurred.degraded, degrade.blur(clean, blur.kernel, sigma=2.55, generator=rng()))
    lost = TASKS["inpaint"].degrade(clean, 0.5, generator=rng())
    assert lost.mask is not None and torch.equal(lost.degraded, clean * (1 - lost.mask))
    assert TASKS["sr"].shave(3) == 3 and TASKS["deblur"].shave(None) == 0
    assert [TASKS[n].channel(True) for n in TASK_NAMES] == ["rgb", "y", "y", "rgb", "rgb"]
    assert [TASKS[n].channel(False) for n in TASK_NAMES] == ["gray", "gray", "gray", "rgb", "rgb"]
