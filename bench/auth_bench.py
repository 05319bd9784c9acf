"""What a token costs a stream's connect: `python -m bench.auth_bench`.

Two figures, each against no token:
- in process, the check both doors run (`stream.authorize`) for N requests;
- on the wire, server CPU seconds (and wall time) for 1,000 connections to the
  real process through the front door, a public topic versus a private one with
  a verified HS256 bearer token. Each is the median of a few rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from multidict import CIMultiDict, MultiDict

from bench.run import Server
from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import Verifier, mint
from broadcaster.web import stream_core

SECRET = "bench-secret-" + "b" * 40
OPENED = b": connected\n\n\r\n"


def in_process(count: int) -> tuple[float, float, float]:
    """Seconds per check: a public topic; a private one with a token seen before
    (a reconnect, another tab); a private one with a new token each time."""
    policy = Policy(["user.*"], Verifier.from_secret(SECRET))
    public, private = frozenset({"time"}), frozenset({"user.1.inbox"})
    query: MultiDict[str] = MultiDict()
    # Distinct tokens: their ttl differs by a second each.
    tokens = [mint(SECRET, ["user.1.*"], ttl=3600 + i) for i in range(count)]
    same = [CIMultiDict({"Authorization": f"Bearer {tokens[0]}"})] * count
    fresh = [CIMultiDict({"Authorization": f"Bearer {token}"}) for token in tokens]

    def timed(topics: frozenset[str], requests: list[CIMultiDict[str]]) -> float:
        start = time.perf_counter()
        for headers in requests:
            stream_core.authorize(policy, topics, headers, query, count=True)
        return (time.perf_counter() - start) / count

    return timed(public, [CIMultiDict()] * count), timed(private, same), timed(private, fresh)


async def connect_all(port: int, heads: list[bytes]) -> float:
    """Open a stream per head, 100 at a time, each read until its first frame."""
    writers: list[asyncio.StreamWriter] = []

    async def one(head: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await reader.readuntil(OPENED)
        writers.append(writer)

    start = time.perf_counter()
    for first in range(0, len(heads), 100):
        await asyncio.gather(*(one(head) for head in heads[first : first + 100]))
    elapsed = time.perf_counter() - start
    for writer in writers:
        writer.close()
    return elapsed


def on_the_wire(count: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Per connection: (server CPU seconds, wall seconds), median of `rounds`."""

    def bearing(token: str) -> bytes:
        return (
            f"GET /events?topic=user.1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()

    public = b"GET /events?topic=time HTTP/1.1\r\nHost: x\r\n\r\n"
    same = bearing(mint(SECRET, ["user.*"], ttl=3600))
    heads: dict[str, Callable[[int], list[bytes]]] = {
        "no token": lambda _: [public] * count,
        "seen token": lambda _: [same] * count,
        # Distinct tokens in every round (their ttl differs by a second each).
        "new tokens": lambda r: [
            bearing(mint(SECRET, ["user.*"], ttl=7200 + r * count + i)) for i in range(count)
        ],
    }
    server = Server(
        "broadcaster",
        lambda port: [
            sys.executable, "-m", "broadcaster", "--port", str(port), "--log-level", "WARNING",
            "--tick-interval", "86400", "--heartbeat-interval", "3600",
            "--private-topics", "user.*", "--jwt-secret", SECRET,
        ],
    )  # fmt: skip
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in heads}
    server.start()
    try:
        for r in range(rounds):
            for name, make in heads.items():
                requests = make(r)
                cpu = server.cpu_seconds()
                wall = asyncio.run(connect_all(server.port, requests))
                samples[name].append(((server.cpu_seconds() - cpu) / count, wall / count))
    finally:
        server.stop()
    return {
        name: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
        for name, got in samples.items()
    }


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.auth_bench")
    parser.add_argument("--checks", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    public, seen, fresh = in_process(args.checks)
    print(f"in process, per check: no token {public * 1e6:.1f} us; HS256 token seen before "
          f"{seen * 1e6:.1f} us; new HS256 token {fresh * 1e6:.1f} us")  # fmt: skip
    wire = on_the_wire(args.connections, args.rounds)
    cpu0, wall0 = wire["no token"]
    print(f"front door, per connection (median of {args.rounds} x {args.connections}):")
    for name, (cpu, wall) in wire.items():
        print(f"  {name:10}: server CPU {cpu * 1e6:4.0f} us (x{cpu / cpu0:.2f}), "
              f"wall {wall * 1e6:4.0f} us (x{wall / wall0:.2f})")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
