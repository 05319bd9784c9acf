"""examples/embedded_app.py, run as its README says: a real process."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import open_stream

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "embedded_app.py"


@dataclass
class Example:
    url: str
    proc: subprocess.Popen[bytes]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Example]:
    port = unused_port()
    log = (tmp_path / "example.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_listening(proc, port, tmp_path / "example.log")
        yield Example(f"http://127.0.0.1:{port}", proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def test_the_example_streams_what_its_own_route_publishes(running: Example) -> None:
    ann, example = {"X-User": "ann"}, running.url
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{example}/my-events") as refused:
            assert refused.status == 401  # the application's own middleware
        async with open_stream(session, f"{example}/my-events", ann) as stream:
            async with session.post(
                f"{example}/orders", data="2 pens", headers={"X-User": "bob"}
            ) as answer:
                order_id = (await answer.json())["id"]
            [order] = await stream.events(1)
            assert (order.id, order.event, order.data) == (order_id, "order", "bob ordered 2 pens")
            body = {"topic": "user.ann", "data": "just for ann"}
            async with session.post(f"{example}/sse/publish", json=body) as answer:
                assert answer.status == 200
            [mine] = await stream.events(1)
            assert mine.data == "just for ann"
            async with session.get(f"{example}/sse/healthz") as health:
                assert (await health.json())["clients"] == 1
            # SIGTERM: the stream gets broadcaster's shutdown event, then ends.
            running.proc.send_signal(signal.SIGTERM)
            assert [e.event for e in await stream.rest()] == ["shutdown"]
    assert await asyncio.to_thread(running.proc.wait, 10) == 0


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the example did not listen within 15 s"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
