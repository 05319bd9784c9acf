"""What the embedded path costs per connection, against the standalone server.

    python -m bench.embedded_bench [--quick] [--m1-only]

Runs bench.run's scenarios (M1 memory per idle connection and connect time, M2
latency, M3 capacity, M4 CPU per million deliveries) against `python -m
broadcaster` (streams through the front door) and `bench.baselines.embedded`
(broadcaster inside an aiohttp application: every stream through aiohttp's
handler path). Read the ratios: machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bench import run
from tests.support.load_client import build

SERVERS = {
    "standalone": run.SERVERS["broadcaster"],
    "embedded": lambda port: [sys.executable, "-m", "bench.baselines.embedded", str(port)],
}


def table(results: dict[str, run.Result], plan: run.Plan, m1_only: bool) -> str:
    alone, embedded = results["standalone"].values, results["embedded"].values
    capacity = f"M3/M4 at {plan.m3_clients} clients, median of {plan.repeats} run(s)"
    lines = [
        f"M1/M2 at {plan.m1_clients} clients; {'no M3/M4' if m1_only else capacity}.",
        "",
        "| scenario | standalone | embedded | ratio |",
        "|---|---|---|---|",
    ]
    for key, label, _ in run.ROWS:
        a, b = alone.get(key), embedded.get(key)
        ratio = f"{b / a:.2f}x" if a and b is not None else "-"
        lines.append(f"| {label} | {run._fmt(a)} | {run._fmt(b)} | {ratio} |")
    return "\n".join(lines)


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced run")
    parser.add_argument("--m1-only", action="store_true", help="M1/M2 only (10,000 clients)")
    args = parser.parse_args(argv)
    plan = run.QUICK if args.quick else run.FULL
    build()
    servers = {name: run.Server(name, command) for name, command in SERVERS.items()}
    results = {name: run.Result() for name in servers}
    for name, server in servers.items():
        print(f"{name}: M1/M2", flush=True)
        await run.memory_and_latency(server, plan, results[name])
    runs: dict[str, list[run.Result]] = {name: [] for name in servers}
    for repeat in range(0 if args.m1_only else plan.repeats):
        for name, server in servers.items():
            print(f"{name}: M3/M4, run {repeat + 1} of {plan.repeats}", flush=True)
            one = run.Result()
            await run.capacity(server, plan, one)
            runs[name].append(one)
    for name, result in results.items():
        result.values |= run.medians(runs[name])
    print()
    print(table(results, plan, args.m1_only))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
