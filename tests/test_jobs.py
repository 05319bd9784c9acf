"""Long work streamed live: GET /long, and upload jobs against the real process."""

from __future__ import annotations

import io
import json
import re
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openpyxl
import pytest

from broadcaster.app import create_app
from broadcaster.ops.config import Settings
from broadcaster.wire.sse_parser import ServerEvent, SSEParser
from tests.conftest import (
    ServerFactory,
    ServerProcess,
    Stream,
    open_stream,
    read_until,
    wait_for,
)
from tests.support.transport import dechunk

ROWS = 60_000
LIMIT = 4_000_000
STATE_KEYS = {"rows_done", "total", "percent", "elapsed_s", "rows_per_s", "status"}


async def test_long_streams_each_step_then_done(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(Settings(tick_interval=3600, data_dir=tmp_path)))
    async with client.get("/long?rows=25&step=10&delay=0.01") as response:
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        events = await Stream(response).rest()
    assert [e.event for e in events] == ["progress"] * 3 + ["done"]
    done = [
        re.fullmatch(r"Rows done: (\d+) \((\d+)%\), elapsed: [\d.]+s", e.data) for e in events[:3]
    ]
    assert [(m[1], m[2]) for m in done if m] == [("10", "40"), ("20", "80"), ("25", "100")]
    assert json.loads(events[-1].data)["rows"] == 25


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("rows=0", "rows must be from 1 to 100,000,000, not 0"),
        ("rows=ten", "rows must be a whole number, not 'ten'"),
        ("rows=1.5", "rows must be a whole number, not '1.5'"),
        ("step=1e3", "step must be a whole number, not '1e3'"),
        ("delay=-1", "delay must be from 0 to 60, not -1"),
        ("rows=5&rows=6", "rows is given more than once"),
        ("foo=1", "unknown parameter 'foo'; expected rows, step, delay"),
        ("rows=1000000&step=1", "at most 10000"),
        ("rows=100&step=1&delay=60", "would run 6000 s"),
    ],
)
async def test_long_rejects_bad_parameters(
    aiohttp_client: Any, tmp_path: Path, query: str, words: str
) -> None:
    client = await aiohttp_client(create_app(Settings(tick_interval=3600, data_dir=tmp_path)))
    async with client.get(f"/long?{query}") as response:
        assert response.status == 400
        assert words in (await response.json())["error"]


@pytest.fixture
def server(server_process: ServerFactory, tmp_path: Path) -> ServerProcess:
    data = tmp_path / "data"
    return server_process(
        "--tick-interval", "3600", "--data-dir", str(data), "--max-upload-bytes", str(LIMIT)
    )  # fmt: skip


def csv_bytes(rows: int, tail: bytes = b"") -> bytes:
    lines = [b"id,name,amount"] + [b"%d,name %d,%d.5" % (i, i, i) for i in range(rows)]
    return b"\n".join(lines) + b"\n" + tail


async def upload(
    session: aiohttp.ClientSession, base: str, name: str, content: bytes
) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(content), filename=name, content_type="text/csv")
    return await session.post(f"{base}/jobs", data=form)


async def follow(session: aiohttp.ClientSession, base: str, announce: Stream) -> list[Any]:
    """The job announced on `announce`, from its creation to its end."""
    created = (await announce.events(1))[0]
    assert created.event == "created"
    topic = json.loads(created.data)["topic"]
    headers = {"Last-Event-ID": created.id}
    async with open_stream(session, f"{base}/events?topic={topic}", headers) as stream:
        events = await stream.until(lambda e: e.event in ("done", "failed"), timeout=60)
    return [(e.event, json.loads(e.data)) for e in events]


async def imported(base: str, name: str, content: bytes) -> list[Any]:
    """Upload `content` as `name`, and follow its job from creation to its end."""
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{base}/events?topic=jobs") as announce,
    ):
        response = await upload(session, base, name, content)
        assert response.status == 202
        return await follow(session, base, announce)


def streamed_multipart(size: int) -> aiohttp.MultipartWriter:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(0, size, 65536):
            yield b"x" * 65536

    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(chunks())
    part.set_content_disposition("form-data", name="file", filename="big.csv")
    return writer


def tables(server: ServerProcess) -> list[str]:
    database = Path(server.args[server.args.index("--data-dir") + 1]) / "broadcaster.db"
    with sqlite3.connect(database) as db:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]


async def test_upload_is_imported_and_every_watcher_follows_it(server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=jobs") as announce,
    ):
        response = await upload(session, server.url, "sales.csv", csv_bytes(ROWS))
        assert response.status == 202
        answer = await response.json()
        assert response.headers["Location"] == answer["status_url"] == f"/jobs/{answer['id']}"
        assert re.fullmatch(
            rf"/events\?topic=job\.{answer['id']}&lastEventId=\d+-\d+", answer["events_url"]
        )
        events = await follow(session, server.url, announce)
        status = await (await session.get(server.url + answer["status_url"])).json()
        listed = await (await session.get(f"{server.url}/jobs")).json()
    kinds = [kind for kind, _ in events]
    assert (kinds[0], kinds[-1]) == ("created", "done")
    assert set(kinds[1:-1]) <= {"progress"}
    assert all(state.keys() >= STATE_KEYS for _, state in events)
    done = events[-1][1]
    assert (done["rows_done"], done["percent"], done["table"]) == (
        ROWS,
        100.0,
        f"upload_{answer['id']}",
    )
    assert status["status"] == "done"
    assert [job["id"] for job in listed["jobs"]] == [answer["id"]]
    assert tables(server) == [done["table"]]


@pytest.mark.parametrize("write_only", [False, True], ids=["dimension", "no dimension"])
async def test_xlsx_upload_is_imported(
    server: ServerProcess, tmp_path: Path, write_only: bool
) -> None:
    # Write-only mode writes no <dimension>: the total is counted instead.
    book = openpyxl.Workbook(write_only=write_only)
    sheet = book.create_sheet() if write_only else book.active
    assert sheet is not None
    sheet.append(["city", "population"])
    for i in range(2_000):
        sheet.append([f"city {i}", i * 1000])
    book.save(tmp_path / "cities.xlsx")
    events = await imported(server.url, "cities.xlsx", (tmp_path / "cities.xlsx").read_bytes())
    kind, state = events[-1]
    assert kind == "done", state["error"]
    assert (state["rows_done"], state["total"]) == (2_000, 2_000)
    # Progress while calamine loads (rows 0) cannot know the total yet: a
    # loaded machine makes the load outlast the first progress tick.
    assert all(
        state["total"] == 2_000
        for kind, state in events
        if kind == "progress" and state["rows_done"]
    )


async def test_a_sheet_over_the_configured_memory_budget_fails_naming_it(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    server = server_process(
        "--tick-interval", "3600", "--data-dir", str(tmp_path / "data"),
        "--xlsx-memory-mib", "128",
    )  # fmt: skip
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"], sheet["XFD1048576"] = "a", 1  # a grid spanning every cell of a sheet
    book.save(tmp_path / "sparse.xlsx")
    events = await imported(server.url, "sparse.xlsx", (tmp_path / "sparse.xlsx").read_bytes())
    kind, state = events[-1]
    assert kind == "failed"
    assert state["error"] == (
        "the sheet does not fit in the XLSX reader's memory budget (128 MiB, --xlsx-memory-mib):"
        " it holds every cell from the sheet's first used cell to its last, empty ones too"
    )


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("ragged.csv", csv_bytes(12_000, b"1,2\n"), "row 12002: 2 fields, but the header has 3"),
        ("latin1.csv", b"a,b\n" + "é,1\n".encode("latin-1"), "row 2: not UTF-8"),
        ("empty.csv", b"", "the file is empty"),
        ("notes.pdf", b"%PDF-1.4", "not a CSV or XLSX file"),
        ("broken.xlsx", b"PK\x03\x04 broken", "not a valid XLSX file"),
    ],
)
async def test_bad_file_fails_the_job_and_leaves_no_table(
    server: ServerProcess, name: str, content: bytes, words: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=jobs") as announce,
    ):
        assert (await upload(session, server.url, name, content)).status == 202
        events = await follow(session, server.url, announce)
    kind, state = events[-1]
    assert kind == "failed"
    assert words in state["error"]
    assert tables(server) == []


async def test_upload_limits_and_malformed_requests(server: ServerProcess) -> None:
    uploads = Path(server.args[server.args.index("--data-dir") + 1]) / "uploads"
    async with aiohttp.ClientSession() as session:
        response = await upload(session, server.url, "big.csv", b"x" * (LIMIT + 1))
        assert response.status == 413
        assert "--max-upload-bytes" in (await response.json())["error"]
        # Without a Content-Length the limit is enforced while streaming to disk.
        response = await session.post(f"{server.url}/jobs", data=streamed_multipart(LIMIT + 1))
        assert response.status == 413
        response = await session.post(
            f"{server.url}/jobs", data=b"a,b\n", headers={"Content-Type": "text/csv"}
        )
        assert response.status == 415
        form = aiohttp.FormData()
        form.add_field("other", io.BytesIO(b"a,b\n"), filename="x.csv")
        response = await session.post(f"{server.url}/jobs", data=form)
        assert response.status == 400
        assert "no file in the form" in (await response.json())["error"]
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("file", "a,b\n1,2\n")  # curl -F file=hello: text, not a file
        response = await session.post(f"{server.url}/jobs", data=form)
        assert response.status == 400
        assert "holds text, not a file" in (await response.json())["error"]
        response = await session.get(f"{server.url}/jobs/nope")
        assert response.status == 404
    assert not uploads.exists() or list(uploads.iterdir()) == []


async def wait_until_done(session: aiohttp.ClientSession, status_url: str) -> None:
    async def done() -> bool:
        async with session.get(status_url) as response:
            return bool((await response.json())["status"] == "done")

    await wait_for(done, 30, f"{status_url} to be done")


def late_stream(port: int, events_url: str, extra_header: str) -> list[ServerEvent]:
    """The events of `events_url` up to and including `done`, read raw."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {events_url} HTTP/1.1\r\nHost: x\r\n{extra_header}\r\n".encode())
        try:
            received = read_until(sock, b'"status": "done"')
            while not received.endswith(b"\n\n\r\n"):  # the end of the event, and chunk
                received += read_until(sock, b"\r\n")
        except TimeoutError:
            raise AssertionError("no done event for a late subscriber") from None
    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 "), head
    return list(SSEParser().feed(dechunk(body)[0]))


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_subscriber_who_comes_after_the_end_still_gets_it(
    server_process: ServerFactory, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    args = ["--tick-interval", "3600", "--data-dir", str(tmp_path / "data")]
    if backend == "redis":
        args += ["--redis-url", request.getfixturevalue("redis_server").url]
    server = server_process(*args)
    async with aiohttp.ClientSession() as session:
        answer = await (await upload(session, server.url, "late.csv", csv_bytes(1_000))).json()
        await wait_until_done(session, server.url + answer["status_url"])
    # The front door streams a plain GET; a Content-Length sends it to aiohttp.
    for extra_header in ("", "Content-Length: 0\r\n"):
        events = late_stream(server.port, answer["events_url"], extra_header)
        kinds = [e.event for e in events]
        assert (kinds[0], kinds[-1]) == ("created", "done"), (extra_header, kinds)
        assert json.loads(events[-1].data)["rows_done"] == 1_000


async def test_metrics_count_every_job_under_one_label(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for name in ("one.csv", "two.csv"):
            answer = await (await upload(session, server.url, name, csv_bytes(10))).json()
            await wait_until_done(session, server.url + answer["status_url"])
        async with session.get(f"{server.url}/metrics") as response:
            metrics = await response.text()
    published = dict(
        re.findall(r'^broadcaster_events_published_total\{topic="([^"]+)"\} (\S+)$', metrics, re.M)
    )
    # Each job published at least created and done on its topic; none has a series.
    assert set(published) == {"jobs", "job.*"}, published
    assert float(published["jobs"]) == 2
    assert float(published["job.*"]) >= 4
