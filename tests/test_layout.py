"""The code's shape follows the data path: who may import what, and
ARCHITECTURE.md names every module.

Read from the source with `ast`, so a stray import fails here rather than in
a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "broadcaster"


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(modules()))
def test_only_the_broker_reaches_the_stores(module: str) -> None:
    if within(module, "broadcaster.backends") or module == "broadcaster.broker":
        return
    reached = {name for name in imports(modules()[module]) if within(name, "broadcaster.backends")}
    assert not reached, f"{module} imports {sorted(reached)}: ask the broker instead"
    assert ".backend." not in modules()[module].read_text(), f"{module} reaches broker.backend"


@pytest.mark.parametrize("module", ["broadcaster.stream_core", "broadcaster.origins"])
def test_the_stream_core_knows_no_framework(module: str) -> None:
    assert not {name for name in imports(modules()[module]) if within(name, "aiohttp")}


def test_the_doors_share_the_core_not_each_other() -> None:
    for door in ("broadcaster.web.front_door", "broadcaster.web.long"):
        assert "broadcaster.web.stream" not in imports(modules()[door]), door
        assert "broadcaster.ticker" not in imports(modules()[door]), door
    assert "broadcaster.ticker" not in imports(modules()["broadcaster.stream_core"])


@pytest.mark.parametrize("module", sorted(modules()))
def test_architecture_names_every_module(module: str) -> None:
    path = modules()[module].relative_to(ROOT)
    if path.name == "__init__.py":
        return
    assert f"`{path.as_posix()}`" in (ROOT / "ARCHITECTURE.md").read_text(), path
