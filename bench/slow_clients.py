"""Slow clients next to normal ones (issue 7), at full scale: 1,000 normal
clients, 200 stalled. The scenario lives in tests/support/slow_clients.py,
which tests/test_load.py runs at a bounded scale.

    python -m bench.slow_clients
"""

from __future__ import annotations

import asyncio
import sys

from bench.run import Server
from tests.support.load_client import build
from tests.support.slow_clients import Scenario, run

FULL = Scenario(normal=1000, slow=200, queue=32, rate=50, seconds=5.0)


async def main() -> None:
    build()
    scenario = FULL
    server = Server(
        "broadcaster",
        lambda port: [
            sys.executable, "-m", "broadcaster", "--port", str(port), "--log-level", "WARNING",
            "--tick-interval", "86400", "--queue-size", str(scenario.queue),
        ],
    )  # fmt: skip
    server.start()
    try:
        result = await run(server.port, server.rss_kib, scenario)
    finally:
        server.stop()
    for key, value in result.items():
        print(f"{key:18} {value:,.0f}" if isinstance(value, float) else f"{key:18} {value:,}")


if __name__ == "__main__":
    asyncio.run(main())
