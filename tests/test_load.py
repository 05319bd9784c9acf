"""Under load, against the real process: slow clients cost nobody else, and a
SIGTERM with thousands of clients connected ends promptly and cleanly."""

from __future__ import annotations

import asyncio
import resource

from tests.conftest import ServerFactory
from tests.support import slow_clients
from tests.support.load_client import build
from tests.support.slow_clients import Scenario

BOUNDED = Scenario(normal=200, slow=50, queue=32, rate=50, seconds=5.0)
SHUTDOWN_CLIENTS = 5000


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def test_slow_clients_are_evicted_and_cost_the_others_nothing(
    server_process: ServerFactory,
) -> None:
    raise_fd_limit()
    await asyncio.to_thread(build)
    server = server_process(
        "--tick-interval", "3600", "--queue-size", str(BOUNDED.queue), "--log-level", "WARNING"
    )  # fmt: skip
    result = await slow_clients.run(server.port, server.rss_kib, BOUNDED)
    print(f"slow clients (bounded scale): {result}")
    assert result["normal_received"] == result["normal_expected"]
    assert result["normal_closed"] == 0
    assert result["evicted"] == BOUNDED.slow
    growth = result["rss_peak_kib"] - result["rss_before_kib"]
    assert growth <= BOUNDED.memory_bound_kib() + 10 * 1024, result


async def test_sigterm_with_5000_clients(server_process: ServerFactory) -> None:
    raise_fd_limit()
    server = server_process("--tick-interval", "3600", "--log-level", "WARNING")
    slots = asyncio.Semaphore(500)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with slots:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b": connected\n\n")
            return reader, writer

    clients = await asyncio.gather(*(connect() for _ in range(SHUTDOWN_CLIENTS)))
    seconds = await asyncio.to_thread(server.terminate)
    endings = await asyncio.gather(*(_ending(reader) for reader, _ in clients))
    for _, writer in clients:
        writer.close()
    assert seconds < 2.0, f"exit took {seconds:.2f}s"
    assert endings.count("shutdown") == SHUTDOWN_CLIENTS, {
        e: endings.count(e) for e in set(endings)
    }
    assert server.proc is not None
    assert server.proc.returncode == 0
    assert "Traceback" not in server.log()
    print(f"SIGTERM with {SHUTDOWN_CLIENTS} clients: exited in {seconds:.3f}s")


async def _ending(reader: asyncio.StreamReader) -> str:
    async with asyncio.timeout(10):
        rest = await reader.read()
    if b"event: shutdown" in rest:
        return "shutdown"
    return "clean end" if rest.endswith(b"0\r\n\r\n") else "cut"
