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
    if within(module, "broadcaster.fanout.stores") or module == "broadcaster.fanout.broker":
        return
    reached = {
        name for name in imports(modules()[module]) if within(name, "broadcaster.fanout.stores")
    }
    assert not reached, f"{module} imports {sorted(reached)}: ask the broker instead"
    assert ".backend." not in modules()[module].read_text(), f"{module} reaches broker.backend"


@pytest.mark.parametrize("module", ["broadcaster.web.stream_core", "broadcaster.wire.origins"])
def test_the_stream_core_knows_no_framework(module: str) -> None:
    assert not {name for name in imports(modules()[module]) if within(name, "aiohttp")}


def test_the_doors_share_the_core_not_each_other() -> None:
    for door in ("broadcaster.edge.front_door", "broadcaster.web.slow_work"):
        assert "broadcaster.web.stream" not in imports(modules()[door]), door
        assert "broadcaster.fanout.ticker" not in imports(modules()[door]), door
    assert "broadcaster.fanout.ticker" not in imports(modules()["broadcaster.web.stream_core"])


@pytest.mark.parametrize("module", sorted(modules()))
def test_architecture_names_every_module(module: str) -> None:
    path = modules()[module].relative_to(ROOT)
    if path.name == "__init__.py":
        return
    assert f"`{path.as_posix()}`" in (ROOT / "ARCHITECTURE.md").read_text(), path


# Each folder may import only from the folders below it on the data path;
# jobs/routes.py is the one jobs module that is also an HTTP handler.
BELOW: dict[str, set[str]] = {
    "wire": set(),
    "fanout": {"wire"},
    "auth": {"wire"},
    "ops": {"wire", "fanout", "auth"},
    "jobs": {"wire", "fanout", "auth", "ops"},
    "web": {"wire", "fanout", "auth", "ops", "jobs"},
    "edge": {"wire", "fanout", "auth", "ops", "web"},
    "client": {"wire"},
    "cli": {"wire", "auth", "client"},
}
EXCEPTIONS = {"broadcaster.jobs.routes": {"web"}}


def folder(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "broadcaster" else None


@pytest.mark.parametrize("module", sorted(m for m in modules() if folder(m) in BELOW))
def test_a_folder_imports_only_from_below_it(module: str) -> None:
    own = folder(module)
    assert own is not None
    allowed = BELOW[own] | {own} | EXCEPTIONS.get(module, set())
    crossing = {
        name
        for name in imports(modules()[module])
        if within(name, "broadcaster") and folder(name) not in allowed | {None}
    }
    assert not crossing, f"{module} imports {sorted(crossing)}, above its folder"


def test_every_folder_has_a_place_in_the_order() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(BELOW), "name the new folder in BELOW and in ARCHITECTURE.md"


WEB_TYPES = ("aiohttp.web", "aiohttp.abc", "aiohttp.web_request", "aiohttp.web_response")


@pytest.mark.parametrize(
    "module", sorted(m for m in modules() if folder(m) in {"wire", "fanout", "auth", "ops"})
)
def test_below_the_handlers_nothing_knows_aiohttps_web_types(module: str) -> None:
    used = {name for name in imports(modules()[module]) if any(within(name, t) for t in WEB_TYPES)}
    assert not used, f"{module} imports {sorted(used)}: that belongs in web/ or edge/"


@pytest.mark.parametrize("module", sorted(modules()))
def test_http_chunk_framing_is_written_once(module: str) -> None:
    """In `wire/chunked.py`; the value module `wire/events.py` only calls it."""
    if module == "broadcaster.wire.chunked":
        return
    source = modules()[module].read_text()
    assert 'b"%x' not in source, module
    assert 'b"0\\r\\n\\r\\n"' not in source, module
