"""Import benchmark (issue 4): a generated 500,000-row, 10-column file imported
through the running server, against the sqlite3 command-line tool's `.import` of
the same CSV, and the XLSX import against the openpyxl reader it replaced
(bench/openpyxl_baseline.py), in the same run.

    python -m bench.import_bench [--rows N] [--runs 3] [--baseline-rows 50000]

Reports medians over the runs: rows per second (and the ratios), the peak RSS of
the server and its XLSX reader process together during the import, and the p99
lateness of the ticker (every 50 ms) during the import against an idle server,
from the `broadcaster_tick_lateness_seconds` histogram. The openpyxl baseline
reads a file of --baseline-rows rows of the same data (its rate does not depend
on the size; 500,000 rows take it minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.run import PAGE, Server
from tests.support.load_client import BUILD, SERVER_CORE, pin

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
    """The first `rows` rows of the CSV `source`, written by openpyxl."""
    path = BUILD / f"import-{rows}.xlsx"
    if not path.exists():
        import openpyxl

        book = openpyxl.Workbook(write_only=True)
        sheet = book.create_sheet()
        with source.open(newline="") as file:
            for number, row in enumerate(csv.reader(file)):
                if number > rows:
                    break
                sheet.append(row)
        book.save(path)
    return path


def openpyxl_import(source: Path) -> float:
    """Rows per second of the openpyxl import path, pinned like the server."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.openpyxl_baseline", str(source)],
        check=True, capture_output=True, text=True, preexec_fn=pin(SERVER_CORE),
    )  # fmt: skip
    result = json.loads(done.stdout)
    return float(result["rows"] / result["seconds"])


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants (the server and its XLSX reader)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE // 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the listing and the read
    return total


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
        assert server.proc is not None
        while True:
            peak = max(peak, tree_rss_kib(server.proc.pid))
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


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def one_run(csv_path: Path, xlsx_path: Path, baseline_path: Path) -> dict[str, Any]:
    cli_seconds = sqlite_cli_import(csv_path)
    result: dict[str, Any] = {"cli_rate": (count_rows(csv_path)) / cli_seconds}
    for path in (csv_path, xlsx_path):
        with tempfile.TemporaryDirectory() as data:
            server = Server("broadcaster", serve_command(Path(data)))
            server.start()
            try:
                result[path.suffix] = await through_server(server, path)
            finally:
                server.stop()
    result["openpyxl_rate"] = openpyxl_import(baseline_path)
    print(json.dumps(result), flush=True)
    return result


def count_rows(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[1])


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=50_000)
    args = parser.parse_args(argv)
    if shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 command-line tool is needed: apt-get install sqlite3")
    csv_path = generate_csv(args.rows)
    xlsx_path = generate_xlsx(args.rows, csv_path)
    baseline_path = generate_xlsx(args.baseline_rows, csv_path)
    runs = [await one_run(csv_path, xlsx_path, baseline_path) for _ in range(args.runs)]
    cli_rate = statistics.median(r["cli_rate"] for r in runs)
    openpyxl_rate = statistics.median(r["openpyxl_rate"] for r in runs)
    print(
        f"\n{args.rows:,} rows x {COLUMNS} columns; ticker every {TICK * 1000:.0f} ms;"
        f" medians of {args.runs} runs\n"
    )
    print(
        "| file | import s | rows/s | vs sqlite3 .import | vs openpyxl path | peak RSS MiB"
        " | tick p99 idle | tick p99 importing |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for suffix in (".csv", ".xlsx"):
        r = median_of([run[suffix] for run in runs])
        # Ratios within each run, then their median: the machine's load drifts
        # between runs more than between the parts of one run.
        r["vs_cli"] = statistics.median(run[suffix]["rows_per_s"] / run["cli_rate"] for run in runs)
        r["vs_openpyxl"] = statistics.median(
            run[suffix]["rows_per_s"] / run["openpyxl_rate"] for run in runs
        )
        versus = f"{r['vs_openpyxl']:.1f}x" if suffix == ".xlsx" else ""
        print(
            f"| {suffix[1:].upper()} | {r['seconds']:.2f} | {r['rows_per_s']:,.0f} | "
            f"{r['vs_cli']:.2f}x | {versus} | {r['peak_rss_mib']:.0f} | "
            f"≤ {r['idle_p99_ms']:g} ms | ≤ {r['busy_p99_ms']:g} ms |"
        )
    print(
        f"| XLSX, openpyxl path ({args.baseline_rows:,} rows) | "
        f"{args.rows / openpyxl_rate:.2f} (est.) | {openpyxl_rate:,.0f} | "
        f"{statistics.median(run['openpyxl_rate'] / run['cli_rate'] for run in runs):.2f}x"
        " | 1.0x | | | |"
    )
    print(
        f"| sqlite3 .import (CSV) | {args.rows / cli_rate:.2f} | {cli_rate:,.0f} | 1.00x | | | | |"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
