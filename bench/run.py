"""The benchmark harness: broadcaster against the naive baseline, in one run.

    python -m bench.run [--quick]

Scenarios (see docs/PERFORMANCE.md):
  M1  memory per idle connection, and connect time, at --m1-clients
  M2  latency p50/p99 with those clients at 1 message/s
  M3  capacity at --m3-clients: the highest rate with no loss and p99 < 250 ms
  M4  server CPU seconds per million deliveries at M3's highest passing step
  M5  the same capacity, published by a pipelining C publisher
      (bench/publisher.c): one event per request, and batches of --batch
      events per request (broadcaster only: the naive server takes one)
Plus the load client's own headroom, against a trivial C server, and in M5 the
CPU share that the load client and the publisher together took of their core.

`--src DIR` runs broadcaster from another checkout (a "before" measurement).

The server is pinned to core 0 and the load client and publisher to core 1.
Machines here are shared and noisy: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import unused_port

from tests.support.load_client import BUILD, CLIENT_CORE, SERVER_CORE, LoadClient, build, pin

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
P99_LIMIT_MS = 250.0


@dataclass(frozen=True)
class Plan:
    m1_clients: int
    m2_seconds: float
    m3_clients: int
    m3_rates: tuple[int, ...]
    step_seconds: float
    headroom_seconds: float
    repeats: int
    m5_single_rates: tuple[int, ...] = ()
    m5_batch_rates: tuple[int, ...] = ()
    through: bool = False
    """M5 goes on past a failing step (for figures at fixed rates, under noise)."""


FULL = Plan(
    10_000, 20, 1000, (25, 50, 100, 150, 200, 300, 400, 500, 600, 800, 1000), 5, 5, 3,
    (10, 25, 50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000),
    (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000),
)  # fmt: skip
QUICK = Plan(
    2000, 5, 300, (50, 100, 200, 400, 800), 2, 2, 1,
    (200, 400, 800, 1600), (1000, 2000, 4000, 8000),
)  # fmt: skip
CAPACITY_KEYS = ("m3_rate", "m3_deliveries_per_s", "m4_cpu_s_per_million")
M5_KEYS = ("rate", "deliveries_per_s", "p99_ms", "cpu_s_per_million", "client_core_share")
MODES = ("single", "batch")
BATCH = 20
PUBLISHER_CONNECTIONS = 4


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Server:
    name: str
    command: Callable[[int], list[str]]
    port: int = field(default_factory=unused_port)
    proc: subprocess.Popen[bytes] | None = None
    src: Path = HERE.parent

    def start(self) -> None:
        self.port = unused_port()
        self.proc = subprocess.Popen(
            self.command(self.port), preexec_fn=pin(SERVER_CORE), cwd=self.src,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def rss_kib(self) -> int:
        assert self.proc is not None
        return int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1]) * PAGE // 1024

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)


SERVERS = {
    "naive": lambda port: [sys.executable, "-m", "bench.baselines.naive", str(port)],
    "broadcaster": lambda port: [
        sys.executable, "-m", "broadcaster", "--port", str(port), "--log-level", "WARNING",
        "--tick-interval", "86400", "--max-clients", "20000",
    ],
}  # fmt: skip


async def publish_at(port: int, rate: float, seconds: float) -> int:
    """Open-loop publishing: fire each message on schedule, whatever came back."""
    url = f"http://127.0.0.1:{port}/publish"
    sent = 0
    in_flight: set[asyncio.Task[bool]] = set()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(seq: int) -> bool:
            body = {"topic": "bench", "data": f"{seq} {time.time_ns()}"}
            async with session.post(url, json=body) as response:
                return response.status == 200

        loop = asyncio.get_running_loop()
        start = loop.time()
        total = int(rate * seconds)
        while sent < total:
            due = min(total, int((loop.time() - start) * rate) + 1)
            while sent < due:
                sent += 1
                task = loop.create_task(one(sent))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.sleep(max(0.0, start + sent / rate - loop.time()))
        results = await asyncio.gather(*in_flight)
    return sent - results.count(False)


async def drain(client: LoadClient, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.ask("count")["received"] >= expected:
            return
        await asyncio.sleep(0.1)


@dataclass
class Result:
    values: dict[str, float] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)


async def memory_and_latency(server: Server, plan: Plan, result: Result) -> None:
    server.start()
    try:
        before = server.rss_kib()
        client = LoadClient(server.port, plan.m1_clients)
        try:
            await asyncio.sleep(1)
            established = client.ready["established"]
            result.values["connect_s"] = client.ready["connect_s"]
            result.values["m1_kib_per_conn"] = (server.rss_kib() - before) / max(1, established)
            client.ask("report")
            published = await publish_at(server.port, 1, plan.m2_seconds)
            await drain(client, published * established, 5)
            report = client.ask("report")
            result.values["m2_p50_ms"] = report["p50_ms"]
            result.values["m2_p99_ms"] = report["p99_ms"]
            result.values["m2_loss"] = published * established - report["received"]
        finally:
            client.close()
    finally:
        server.stop()


async def capacity(server: Server, plan: Plan, result: Result) -> None:
    server.start()
    try:
        client = LoadClient(server.port, plan.m3_clients)
        try:
            for rate in plan.m3_rates:
                step = await _step(server, client, rate, plan.step_seconds)
                result.steps.append(step)
                print(f"  {server.name:12} {rate:5}/s  {json.dumps(step)}", flush=True)
                if not step["ok"]:
                    break
                result.values["m3_rate"] = rate
                result.values["m3_deliveries_per_s"] = step["deliveries_per_s"]
                result.values["m4_cpu_s_per_million"] = step["cpu_s_per_million"]
        finally:
            client.close()
    finally:
        server.stop()


async def _step(server: Server, client: LoadClient, rate: int, seconds: float) -> dict[str, Any]:
    client.ask("report")
    cpu, started = server.cpu_seconds(), time.monotonic()
    published = await publish_at(server.port, rate, seconds)
    established = client.ready["established"] - client.ask("count")["closed"]
    expected = published * established
    await drain(client, expected, 2)
    elapsed, cpu = time.monotonic() - started, server.cpu_seconds() - cpu
    report = client.ask("report")
    delivered = report["received"]
    ok = (
        delivered >= expected
        and published >= rate * seconds * 0.98
        and report["p99_ms"] < P99_LIMIT_MS
        and report["closed"] == 0
    )
    return {
        "ok": ok, "published": published, "expected": expected, "received": delivered,
        "p50_ms": report["p50_ms"], "p99_ms": report["p99_ms"],
        "deliveries_per_s": round(delivered / elapsed),
        "cpu_s_per_million": round(cpu / max(1, delivered) * 1e6, 2),
    }  # fmt: skip


async def pipelined(server: Server, plan: Plan, result: Result) -> None:
    """M5: capacity when a pipelining publisher sends single events, then batches."""
    server.start()
    try:
        client = LoadClient(server.port, plan.m3_clients)
        try:
            for mode in MODES if server.name == "broadcaster" else MODES[:1]:
                rates = plan.m5_single_rates if mode == "single" else plan.m5_batch_rates
                batch = 1 if mode == "single" else BATCH
                for rate in rates:
                    step = await _pipelined_step(server, client, rate, batch, plan.step_seconds)
                    result.steps.append({"mode": mode} | step)
                    print(f"  {server.name:12} {mode:6} {rate:5}/s  {json.dumps(step)}", flush=True)
                    if not step["ok"] and not plan.through:
                        break
                    if not step["ok"]:
                        continue
                    for key in M5_KEYS:
                        result.values[f"m5_{mode}_{key}"] = step[key] if key != "rate" else rate
        finally:
            client.close()
    finally:
        server.stop()


async def _pipelined_step(
    server: Server, client: LoadClient, rate: int, batch: int, seconds: float
) -> dict[str, Any]:
    client.ask("report")
    cpu, started = server.cpu_seconds(), time.monotonic()
    client_cpu = process_cpu_seconds(client.proc.pid)
    publisher = await asyncio.create_subprocess_exec(
        str(BUILD / "publisher"), "127.0.0.1", str(server.port), str(rate), str(seconds),
        str(batch), str(PUBLISHER_CONNECTIONS), "bench",
        stdout=asyncio.subprocess.PIPE, preexec_fn=pin(CLIENT_CORE),
    )  # fmt: skip
    out, _ = await publisher.communicate()
    sent: dict[str, Any] = json.loads(out or b'{"events": 0, "ok_events": 0, "cpu_s": 0}')
    established = client.ready["established"] - client.ask("count")["closed"]
    expected = sent["ok_events"] * established
    await drain(client, expected, 2)
    elapsed, cpu = time.monotonic() - started, server.cpu_seconds() - cpu
    client_cpu = process_cpu_seconds(client.proc.pid) - client_cpu + sent["cpu_s"]
    report = client.ask("report")
    delivered = report["received"]
    ok = (
        publisher.returncode == 0
        and sent["ok_events"] == sent["events"] >= rate * seconds * 0.98
        and delivered >= expected
        and report["p99_ms"] < P99_LIMIT_MS
        and report["closed"] == 0
    )
    return {
        "ok": ok, "events": sent["events"], "accepted": sent["ok_events"],
        "busy": sent.get("busy", 0), "expected": expected, "received": delivered,
        "p50_ms": report["p50_ms"], "p99_ms": report["p99_ms"],
        "deliveries_per_s": round(delivered / elapsed),
        "cpu_s_per_million": round(cpu / max(1, delivered) * 1e6, 2),
        "client_core_share": round(client_cpu / elapsed, 2),
    }  # fmt: skip


def medians(runs: list[Result]) -> dict[str, float]:
    values: dict[str, float] = {}
    m5 = [f"m5_{mode}_{key}" for mode in MODES for key in M5_KEYS]
    for key in (*CAPACITY_KEYS, *m5):
        present = [run.values[key] for run in runs if key in run.values]
        if present:
            values[key] = statistics.median(present)
    return values


def headroom(plan: Plan) -> dict[str, float]:
    """How fast the load client can take in frames from a trivial C server."""
    port = unused_port()
    blaster = subprocess.Popen(
        [str(BUILD / "blaster"), str(port), str(plan.m3_clients), str(plan.headroom_seconds)],
        stdout=subprocess.PIPE, preexec_fn=pin(SERVER_CORE),
    )  # fmt: skip
    assert blaster.stdout is not None
    blaster.stdout.readline()
    client = LoadClient(port, plan.m3_clients)
    started = time.monotonic()
    sent = json.loads(blaster.stdout.readline())["sent"]
    blaster.wait()
    time.sleep(0.5)
    report = client.ask("report")
    client.close()
    return {"deliveries_per_s": report["received"] / (time.monotonic() - started), "sent": sent}


ROWS: Sequence[tuple[str, str, str]] = (
    ("connect_s", "M1 connect time, s", "lower"),
    ("m1_kib_per_conn", "M1 memory per idle connection, KiB", "lower"),
    ("m2_p50_ms", "M2 p50 latency, ms", "lower"),
    ("m2_p99_ms", "M2 p99 latency, ms", "lower"),
    ("m2_loss", "M2 messages lost", "lower"),
    ("m3_rate", "M3 capacity, msg/s", "higher"),
    ("m3_deliveries_per_s", "M3 deliveries/s at capacity", "higher"),
    ("m4_cpu_s_per_million", "M4 server CPU s per million deliveries", "lower"),
    ("m5_single_rate", "M5 pipelined single events: capacity, events/s", "higher"),
    ("m5_single_deliveries_per_s", "M5 single: deliveries/s at capacity", "higher"),
    ("m5_single_p99_ms", "M5 single: p99 at capacity, ms", "lower"),
    ("m5_single_cpu_s_per_million", "M5 single: server CPU s per million deliveries", "lower"),
    ("m5_single_client_core_share", "M5 single: load client + publisher, share of a core", ""),
    ("m5_batch_rate", f"M5 batches of {BATCH}: capacity, events/s", "higher"),
    ("m5_batch_deliveries_per_s", "M5 batches: deliveries/s at capacity", "higher"),
    ("m5_batch_p99_ms", "M5 batches: p99 at capacity, ms", "lower"),
    ("m5_batch_cpu_s_per_million", "M5 batches: server CPU s per million deliveries", "lower"),
    ("m5_batch_client_core_share", "M5 batches: load client + publisher, share of a core", ""),
)


def table(results: dict[str, Result], plan: Plan) -> str:
    empty = Result()
    naive, ours = results.get("naive", empty).values, results.get("broadcaster", empty).values
    lines = [
        f"M1/M2 at {plan.m1_clients} clients; M3/M4 at {plan.m3_clients} clients,"
        f" median of {plan.repeats} run(s).",
        "",
        "| scenario | naive | broadcaster | ratio |",
        "|---|---|---|---|",
    ]
    for key, label, _ in ROWS:
        a, b = naive.get(key), ours.get(key)
        ratio = f"{b / a:.2f}x" if a and b is not None else "-"
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} | {ratio} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


async def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced run, under 2 minutes")
    parser.add_argument("--only", choices=sorted(SERVERS), help="measure one server")
    parser.add_argument("--json", type=Path, help="also write raw results here")
    parser.add_argument(
        "--scenarios", default="m1,m3,m5", help="which to run: m1 (M1/M2), m3 (M3/M4), m5"
    )
    parser.add_argument("--src", type=Path, default=HERE.parent, help="broadcaster's checkout")
    parser.add_argument("--repeats", type=int, help="M3/M5 runs (default 3, quick 1)")
    parser.add_argument(
        "--through", action="store_true", help="M5: measure every rate, past a failing step"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan = replace(plan, repeats=args.repeats)
    if args.through:
        plan = replace(plan, through=True)
    scenarios = set(args.scenarios.split(","))
    build()
    room = headroom(plan)
    print(f"load client headroom: {room['deliveries_per_s']:,.0f} deliveries/s", flush=True)
    servers = {n: Server(n, c) for n, c in SERVERS.items() if args.only in (None, n)}
    if "broadcaster" in servers:
        servers["broadcaster"].src = args.src.resolve()
    results = {name: Result() for name in servers}
    for name, server in servers.items():
        if "m1" in scenarios:
            print(f"{name}: M1/M2", flush=True)
            await memory_and_latency(server, plan, results[name])
    # M3/M4 are the noisiest: repeat them, alternating servers, and keep medians.
    runs: dict[str, list[Result]] = {name: [] for name in servers}
    for repeat in range(plan.repeats):
        for name, server in servers.items():
            run = Result()
            if "m3" in scenarios:
                print(f"{name}: M3/M4, run {repeat + 1} of {plan.repeats}", flush=True)
                await capacity(server, plan, run)
            if "m5" in scenarios:
                print(f"{name}: M5, run {repeat + 1} of {plan.repeats}", flush=True)
                await pipelined(server, plan, run)
            runs[name].append(run)
            results[name].steps += run.steps
    for name, result in results.items():
        result.values |= medians(runs[name])
        for key in ("m3_rate", "m5_single_rate", "m5_batch_rate"):
            rates = [run.values.get(key, 0) for run in runs[name]]
            print(f"{name}: {key} in each run: {rates}", flush=True)
    if args.json:
        raw = {name: {"values": r.values, "steps": r.steps} for name, r in results.items()}
        args.json.write_text(json.dumps({"headroom": room, "results": raw}, indent=2))
    print()
    print(table(results, plan))
    if results:
        keys = ("m3_deliveries_per_s", "m5_single_deliveries_per_s", "m5_batch_deliveries_per_s")
        best = max(r.values.get(key, 0) for r in results.values() for key in keys)
        times = room["deliveries_per_s"] / max(best, 1)
        print(f"\nload client headroom: {times:.1f}x the best figure")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
