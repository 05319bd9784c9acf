"""docs/deploy/nginx.conf, run by Debian's nginx in front of two real instances."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import ROOT, RedisServer, ServerFactory

CONFIG = ROOT / "docs" / "deploy" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if found is None:
        pytest.fail("no nginx: apt-get install nginx (.ci/run does)")
    return found


def render(upstreams: list[int], port: int) -> str:
    """The documented config, with this test's ports."""
    text = CONFIG.read_text()
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstreams)
    text, count = re.subn(r"(        server 127\.0\.0\.1:\d+;\n)+", servers, text)
    assert count == 1
    return text.replace("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{port};")


@pytest.fixture
def nginx(
    tmp_path: Path, server_process: ServerFactory, redis_server: RedisServer
) -> Iterator[str]:
    a = server_process("--redis-url", redis_server.url, "--tick-interval", "3600")
    b = server_process("--redis-url", redis_server.url, "--tick-interval", "3600")
    port = unused_port()
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(render([a.port, b.port], port))
    command = [nginx_binary(), "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    command += ["-g", "daemon off;"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise RuntimeError(f"nginx exited: {proc.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not listen")


async def test_events_pass_through_nginx_without_buffering(nginx: str) -> None:
    async with aiohttp.ClientSession() as session:
        streams = [
            await session.get(f"{nginx}/events?topic=t") for _ in range(4)
        ]  # spread over both upstreams by round robin
        try:
            for response in streams:
                assert response.status == 200
                assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
                await response.content.readuntil(b": connected\n\n")
            for i in range(3):
                sent = time.monotonic()
                async with session.post(
                    f"{nginx}/publish", json={"topic": "t", "data": f"m{i}"}
                ) as r:
                    assert r.status == 200
                    event_id = (await r.json())["id"]
                for response in streams:
                    async with asyncio.timeout(2):
                        frame = await response.content.readuntil(b"\n\n")
                    assert frame.startswith(f"id: {event_id}\n".encode())
                    # A buffering proxy would hold a small frame back far longer.
                    assert time.monotonic() - sent < 1.0
        finally:
            for response in streams:
                response.close()


def test_the_documented_config_is_what_the_test_runs() -> None:
    text = CONFIG.read_text()
    assert "proxy_buffering off;" in text
    assert re.search(r"proxy_read_timeout (\d+)h;", text)
    rendered = render([1, 2], 3)
    assert "server 127.0.0.1:1;" in rendered
    assert "listen 127.0.0.1:3;" in rendered
