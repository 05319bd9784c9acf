"""What the tests stand on: the project's public surface and tests/support,
never the benchmark's code or a private name (either can change under a test
without the test being wrong)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
OWN = ("broadcaster", "bench", "tests")


def python_files() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def imported(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from <project module> import name` in `path`."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in OWN:
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] in OWN]
    return found


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_imports_the_benchmark_or_a_private_name(path: Path) -> None:
    names = imported(path)
    from_bench = [module for module, _ in names if module.split(".")[0] == "bench"]
    private = [f"{module}.{name}" for module, name in names if name.startswith("_")]
    assert not from_bench, f"imports {from_bench}: share it through tests/support instead"
    assert not private, f"imports {private}: make it public, or test through what is"
