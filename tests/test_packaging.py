"""A non-editable install serves the page: static/ ships inside the wheel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp

from tests.conftest import ROOT, ServerProcess

STATIC = {"index.html", "app.js", "hub.js", "sse.js", "style.css", "favicon.svg"}


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("broadcaster-*.whl")
    return wheel


async def test_installed_wheel_serves_the_page(tmp_path: Path) -> None:
    wheel = await asyncio.to_thread(build_wheel, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {Path(n).name for n in archive.namelist() if n.startswith("broadcaster/static/")}
    assert shipped >= STATIC
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    # Away from the checkout, PYTHONPATH puts the unpacked wheel ahead of the editable install.
    env = {"PYTHONPATH": str(target)}
    server = ServerProcess([], tmp_path / "server.log", env=env, cwd=tmp_path)
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/static/hub.js", "/openapi.yaml"):
                async with session.get(server.url + path) as response:
                    assert response.status == 200, path
    finally:
        server.kill()
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import broadcaster.web.pages as p; print(p.static_dir())"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == str(target / "broadcaster" / "static")


async def test_the_wheel_tells_type_checkers_it_is_typed(tmp_path: Path) -> None:
    """PEP 561: without `py.typed`, an application's mypy ignores the library's
    annotations (README, "Use it in your own aiohttp app")."""
    wheel = await asyncio.to_thread(build_wheel, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        assert "broadcaster/py.typed" in archive.namelist()
