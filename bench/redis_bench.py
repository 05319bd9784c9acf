"""Redis benchmark (issue 5): two instances sharing a real redis-server, 1,000
clients on each, against one in-memory instance with the same 2,000 clients, in
the same run. Events are published through the first instance at each rate.

    python -m bench.redis_bench

Reports, per rate: deliveries per second, messages lost, p50 and p99 latency.
With three servers, Redis and the clients on 2 cores, nothing is pinned here.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import unused_port

from bench.run import Server, drain, publish_at
from tests.support.load_client import BUILD, LoadClient, build

CLIENTS_PER_INSTANCE = 1000
RATES = (25, 50, 100, 200)
STEP_SECONDS = 5.0


def command(*extra: str) -> Callable[[int], list[str]]:
    def make(port: int) -> list[str]:
        return [
            sys.executable, "-m", "broadcaster", "--port", str(port), "--log-level", "WARNING",
            "--tick-interval", "86400", *extra,
        ]  # fmt: skip

    return make


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = unused_port()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is needed: apt-get install redis-server")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc, port


async def measure(servers: list[Server], clients: list[LoadClient]) -> list[dict[str, Any]]:
    rows = []
    for rate in RATES:
        for client in clients:
            client.ask("report")
        started = time.monotonic()
        published = await publish_at(servers[0].port, rate, STEP_SECONDS)
        expected = published * CLIENTS_PER_INSTANCE
        for client in clients:
            await drain(client, expected, 3)
        elapsed = time.monotonic() - started
        reports = [client.ask("report") for client in clients]
        received = sum(r["received"] for r in reports)
        rows.append({
            "rate": rate,
            "deliveries_per_s": round(received / elapsed),
            "lost": expected * len(clients) - received,
            "p50_ms": max(r["p50_ms"] for r in reports),
            "p99_ms": max(r["p99_ms"] for r in reports),
        })  # fmt: skip
        print(f"  {rows[-1]}", flush=True)
    return rows


async def run(servers: list[Server]) -> list[dict[str, Any]]:
    for server in servers:
        server.start()
    # With one instance, both clients connect to it: the same 2,000 streams.
    targets = servers if len(servers) == 2 else servers * 2
    clients = [LoadClient(s.port, CLIENTS_PER_INSTANCE) for s in targets]
    try:
        await asyncio.sleep(1)
        return await measure(servers, clients)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()


async def main() -> None:
    build()
    with tempfile.TemporaryDirectory() as folder:
        redis, port = start_redis(Path(folder))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            print("redis, 2 instances x 1,000 clients", flush=True)
            shared = await run([Server(f"redis-{i}", command("--redis-url", url)) for i in (1, 2)])
        finally:
            redis.terminate()
            redis.wait()
    print("memory, 1 instance x 2,000 clients", flush=True)
    alone = await run([Server("memory", command())])
    print("\n| msg/s | memory deliveries/s | memory p50 / p99 ms | redis deliveries/s"
          " | redis p50 / p99 ms | lost (memory / redis) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for m, r in zip(alone, shared, strict=True):
        print(
            f"| {m['rate']} | {m['deliveries_per_s']:,} | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} | "
            f"{r['deliveries_per_s']:,} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} | "
            f"{m['lost']} / {r['lost']} |"
        )
    print(f"\n(build: {BUILD})")


if __name__ == "__main__":
    asyncio.run(main())
