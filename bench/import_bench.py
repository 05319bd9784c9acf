"""Import benchmark (issue 4): a generated 500,000-row, 10-column file imported
through the running server, against the sqlite3 command-line tool's `.import` of
the same CSV in the same run.

    python -m bench.import_bench [--rows N]

Reports rows per second (and the ratio to sqlite3), the server's peak RSS during
the import, and the p99 lateness of the ticker (every 50 ms) during the import
against an idle server, from the `broadcaster_tick_lateness_seconds` histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.run import BUILD, Server, pin

COLUMNS = 10
TICK = 0.05
IDLE_SECONDS = 5.0


def generate_csv(rows: int) -> Path:
    path = BUILD / f"import-{rows}.csv"
    if not path.exists():
        BUILD.mkdir(exist_ok=True)
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow([f"col{c}" for c in range(COLUMNS)])
            for r in range(rows):
                writer.writerow([f"r{r}c{c}-{(r * 7919 + c) % 100003}" for c in range(COLUMNS)])
    return path


def generate_xlsx(rows: int, source: Path) -> Path:
    path = BUILD / f"import-{rows}.xlsx"
    if not path.exists():
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet()
        with source.open(newline="") as file:
            for row in csv.reader(file):
                sheet.append(row)
        book.save(path)
    return path


def sqlite_cli_import(source: Path) -> float:
    """Seconds for `sqlite3 .import` of the CSV into a new table."""
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "cli.db"
        started = time.perf_counter()
        subprocess.run(
            ["sqlite3", str(database), ".mode csv", f".import {source} imported"],
            check=True, preexec_fn=pin(0),
        )  # fmt: skip
        return time.perf_counter() - started


def lateness_buckets(text: str) -> dict[float, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "broadcaster_tick_lateness_seconds":
            return {
                float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")
            }
    raise RuntimeError("no tick lateness histogram")


def p99_ms(before: dict[float, float], after: dict[float, float]) -> tuple[float, int]:
    """The histogram bucket bound under which 99% of ticks fell, and the tick count."""
    delta = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = delta[float("inf")]
    for bound in sorted(delta):
        if delta[bound] >= 0.99 * total:
            return bound * 1000, int(total)
    return float("inf"), int(total)


async def scrape(session: aiohttp.ClientSession, base: str) -> dict[float, float]:
    async with session.get(f"{base}/metrics") as response:
        return lateness_buckets(await response.text())


async def through_server(server: Server, source: Path) -> dict[str, Any]:
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        idle_before = await scrape(session, base)
        await asyncio.sleep(IDLE_SECONDS)
        idle_after = await scrape(session, base)
        form = aiohttp.FormData()
        form.add_field("file", source.open("rb"), filename=source.name)
        async with session.post(f"{base}/jobs", data=form) as response:
            assert response.status == 202, await response.text()
            job = await response.json()
        peak = 0
        while True:
            peak = max(peak, server.rss_kib())
            async with session.get(base + job["status_url"]) as response:
                state = await response.json()
            if state["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.05)
        busy_after = await scrape(session, base)
    if state["status"] != "done":
        raise RuntimeError(f"import failed: {state['error']}")
    idle_p99, idle_ticks = p99_ms(idle_before, idle_after)
    busy_p99, busy_ticks = p99_ms(idle_after, busy_after)
    return {
        "seconds": state["elapsed_s"],
        "rows_per_s": state["rows_done"] / state["elapsed_s"],
        "peak_rss_mib": peak / 1024,
        "idle_p99_ms": idle_p99,
        "idle_ticks": idle_ticks,
        "busy_p99_ms": busy_p99,
        "busy_ticks": busy_ticks,
    }


def serve_command(data: Path) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "broadcaster", "--port", str(port), "--log-level", "WARNING",
            "--tick-interval", str(TICK), "--data-dir", str(data),
        ]  # fmt: skip

    return command


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args(argv)
    if shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 command-line tool is needed: apt-get install sqlite3")
    csv_path = generate_csv(args.rows)
    xlsx_path = generate_xlsx(args.rows, csv_path)
    cli_seconds = sqlite_cli_import(csv_path)
    cli_rate = args.rows / cli_seconds
    print(f"sqlite3 .import: {cli_seconds:.2f} s, {cli_rate:,.0f} rows/s", flush=True)
    results = {}
    for path in (csv_path, xlsx_path):
        with tempfile.TemporaryDirectory() as data:
            server = Server("broadcaster", serve_command(Path(data)))
            server.start()
            try:
                results[path.suffix] = await through_server(server, path)
            finally:
                server.stop()
        print(f"{path.suffix}: {results[path.suffix]}", flush=True)
    print(f"\n{args.rows:,} rows x {COLUMNS} columns; ticker every {TICK * 1000:.0f} ms\n")
    print(
        "| file | import s | rows/s | vs sqlite3 .import | peak RSS MiB"
        " | tick p99 idle | tick p99 importing |"
    )
    print("|---|---|---|---|---|---|---|")
    for suffix, r in results.items():
        print(
            f"| {suffix[1:].upper()} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | "
            f"{r['rows_per_s'] / cli_rate:.2f}x | {r['peak_rss_mib']:.0f} | "
            f"≤ {r['idle_p99_ms']:g} ms | ≤ {r['busy_p99_ms']:g} ms |"
        )
    print(f"| sqlite3 .import (CSV) | {cli_seconds:.2f} | {cli_rate:,.0f} | 1.00x | | | |")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
