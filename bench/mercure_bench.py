"""Fan-out through the Mercure endpoint against native /events, on the real process.

    python -m bench.mercure_bench [--clients 1000] [--rates 100,200,400] [--seconds 5]

Each scenario holds `--clients` streams open with the C load client and
publishes to the topic `bench` (POST /publish) at each rate, as `bench.run`'s
M3 step does: deliveries, latency, and the server's CPU per million deliveries.
  native      GET /events?topic=bench
  mercure     GET /.well-known/mercure?match=bench
  patterns    the same, plus 100 subscribers of 100 distinct URL patterns that
              match nothing, so every event evaluates 100 patterns once each
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import quote

import aiohttp

from bench.run import SERVERS, Server, _step
from tests.support.load_client import BUILD, CLIENT_CORE, LoadClient, build, pin

SCENARIOS = {
    "native": ("/events?topic=bench", 0),
    "mercure": ("/.well-known/mercure?match=bench", 0),
    "patterns": ("/.well-known/mercure?match=bench", 100),
}


class PathClient(LoadClient):
    """The C load client on a path of our choosing."""

    def __init__(self, port: int, clients: int, path: str) -> None:
        self.proc = subprocess.Popen(
            [str(BUILD / "loadclient"), "127.0.0.1", str(port), path, str(clients)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=pin(CLIENT_CORE),
        )  # fmt: skip
        self.ready = self._line()


@asynccontextmanager
async def pattern_subscribers(port: int, count: int) -> AsyncIterator[None]:
    """`count` streams, each on a URL pattern of its own, read (and dropped) as they come."""
    if not count:
        yield
        return
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        responses = []
        for n in range(count):
            pattern = quote(f"https://example.com/{n}/:id", safe="")
            url = f"http://127.0.0.1:{port}/.well-known/mercure?match_urlpattern={pattern}"
            response = await session.get(url)
            assert response.status == 200, await response.text()
            responses.append(response)

        async def read(response: aiohttp.ClientResponse) -> None:
            with contextlib.suppress(aiohttp.ClientError):
                while await response.content.readany():
                    pass

        readers = [asyncio.create_task(read(r)) for r in responses]
        try:
            yield
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for response in responses:
                response.close()


async def scenario(name: str, clients: int, rates: Sequence[int], seconds: float) -> None:
    path, patterns = SCENARIOS[name]
    server = Server("broadcaster", SERVERS["broadcaster"])
    server.start()
    try:
        async with pattern_subscribers(server.port, patterns):
            client = PathClient(server.port, clients, path)
            try:
                for rate in rates:
                    step = await _step(server, client, rate, seconds)
                    print(
                        f"| {name} | {clients} | {rate} | {step['received']}/{step['expected']}"
                        f" | {step['p50_ms']} | {step['p99_ms']} | {step['cpu_s_per_million']} |",
                        flush=True,
                    )
            finally:
                client.close()
    finally:
        server.stop()


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rates", default="100,200,400")
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args(argv)
    build()
    rates = [int(rate) for rate in args.rates.split(",")]
    print(
        "| scenario | clients | msg/s | received/expected | p50 ms | p99 ms | CPU s/M deliveries |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in SCENARIOS:
        await scenario(name, args.clients, rates, args.seconds)


if __name__ == "__main__":
    asyncio.run(main())
