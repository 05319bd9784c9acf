"""`broadcaster publish` and `broadcaster listen` against the real server process."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from bench.run import free_port
from tests.conftest import ServerFactory, health, wait_for

QUIET = ("--tick-interval", "3600", "--heartbeat-interval", "3600", "--retry-ms", "100")


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def listening(*args: str) -> AsyncIterator[asyncio.StreamReader]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", "listen", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        yield proc.stdout
    finally:
        proc.kill()
        await proc.wait()


async def next_json(reader: asyncio.StreamReader) -> dict[str, str]:
    line = await asyncio.wait_for(reader.readline(), 15)
    assert line, "listen exited"
    event: dict[str, str] = json.loads(line)
    return event


async def test_publish_prints_the_id(server_process: ServerFactory) -> None:
    server = server_process(*QUIET)
    code, out, err = await cli("publish", "--url", server.url, "--topic", "orders", "hello")
    assert (code, err) == (0, "")
    assert out.strip().split("-")[1] == "1"


async def test_publish_errors_are_one_clear_line(server_process: ServerFactory) -> None:
    server = server_process(*QUIET, "--publish-token", "s3cret")
    code, _, err = await cli("publish", "--url", server.url, "--topic", "t", "--token", "no", "x")
    assert (code, err.strip()) == (1, "broadcaster publish: 403: wrong publish token")
    code, _, err = await cli("publish", "--url", server.url, "--topic", "bad topic", "x")
    assert code == 1
    assert "401" in err
    code, _, err = await cli(
        "publish", "--url", f"http://127.0.0.1:{free_port()}", "--topic", "t", "x"
    )
    assert code == 1
    assert "Cannot connect" in err
    assert "Traceback" not in err


async def test_listen_follows_across_a_restart_and_sees_resync(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    async with listening("--json", "--topic", "t", server.url) as out:
        await _wait_subscribed(server.url)
        _, first_id, _ = await cli("publish", "--url", server.url, "--topic", "t", "one")
        assert await next_json(out) == {"id": first_id.strip(), "event": "message", "data": "one"}
        await asyncio.to_thread(server.terminate)
        assert (await next_json(out))["event"] == "shutdown"
        restarted = server_process(*QUIET, port=server.port)
        resync = await next_json(out)
        assert resync["event"] == "resync"
        assert "unknown or older than the history" in json.loads(resync["data"])["reason"]
        _, second_id, _ = await cli("publish", "--url", restarted.url, "--topic", "t", "two")
        assert await next_json(out) == {"id": second_id.strip(), "event": "message", "data": "two"}


async def _wait_subscribed(base: str) -> None:
    async with aiohttp.ClientSession() as session:

        async def subscribed() -> bool:
            return (await health(session, base))["clients"] == 1

        await wait_for(subscribed, 10, "listen to connect")
