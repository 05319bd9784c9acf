"""The data directory against the real process: refused at start-up when
unusable, and no filesystem failure at run time becomes a 5xx traceback or
leaves anything half-written.

A full disk is a real one: a tmpfs of a few hundred KiB, mounted for the test
(CI runs as root, as it installs packages with apt-get).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from tests.conftest import ServerFactory, ServerProcess, wait_for
from tests.test_jobs import csv_bytes, upload

ARGS = ("--tick-interval", "3600", "--log-level", "INFO")


@contextmanager
def tmpfs(folder: Path, size: str, *options: str) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    options_text = ",".join([f"size={size}", *options])
    subprocess.run(["mount", "-t", "tmpfs", "-o", options_text, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        # Lazy: a server that a failed assertion left running still holds files.
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def start_with(data_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "broadcaster", "--port", str(unused_port()), *ARGS]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=30
    )


def test_start_up_refuses_a_data_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file")
    result = start_with(tmp_path / "notes" / "data")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"broadcaster: unusable --data-dir '{tmp_path}/notes/data': "
        f"'{tmp_path}/notes' is not a directory"
    ]


def test_start_up_refuses_a_read_only_data_dir(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k", "ro") as read_only:
        result = start_with(read_only / "data")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"broadcaster: unusable --data-dir '{read_only}/data': Read-only file system"
    ]


async def upload_answer(server: ServerProcess, content: bytes) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session:
        response = await upload(session, server.url, "sales.csv", content)
        return response.status, await response.json()


async def jobs_listed(server: ServerProcess) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{server.url}/jobs") as response:
        jobs: list[dict[str, object]] = (await response.json())["jobs"]
        return jobs


@pytest.mark.parametrize("damage", ["removed", "replaced by a file"])
async def test_a_data_dir_lost_at_run_time_answers_503(
    server_process: ServerFactory, tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    server = server_process(*ARGS, "--data-dir", str(data))
    shutil.rmtree(data)
    if damage == "replaced by a file":
        data.write_text("not a directory")
    status, body = await upload_answer(server, csv_bytes(10))
    assert status == 503
    assert body["status"] == 503
    assert str(body["error"]).startswith("the data directory is unusable (")
    assert await jobs_listed(server) == []
    assert "Traceback" not in server.log()


def table_names(database: Path) -> list[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]


async def test_a_full_disk_refuses_the_upload_with_507_and_keeps_nothing(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", "256k") as data:
        server = server_process(*ARGS, "--data-dir", str(data))
        status, body = await upload_answer(server, csv_bytes(40_000))  # about 1 MB
        assert status == 507
        assert body == {
            "error": "no space left to store the upload (No space left on device)",
            "status": 507,
        }
        assert list((data / "uploads").iterdir()) == []
        assert await jobs_listed(server) == []
        # Space is back once the half-written upload is gone: the next one fits.
        status, body = await upload_answer(server, csv_bytes(100))
        assert status == 202
        server.kill()
    assert "Traceback" not in server.log()


async def test_a_disk_that_fills_during_the_import_fails_the_job_and_keeps_nothing(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    content = csv_bytes(25_000)  # about 600 KB: it fits, its table does not
    with tmpfs(tmp_path / "small", "1m") as data:
        server = server_process(*ARGS, "--data-dir", str(data))
        assert (await upload_answer(server, content))[0] == 202

        async def finished() -> bool:
            return (await jobs_listed(server))[0]["status"] in ("done", "failed")

        await wait_for(finished, 30, "the job to end")
        job = (await jobs_listed(server))[0]
        assert job["status"] == "failed"
        assert job["error"] == "the database could not be written (database or disk is full)"
        assert job["table"] is None
        assert table_names(data / "broadcaster.db") == []
        assert list((data / "uploads").iterdir()) == []
        server.kill()
    assert "Traceback" not in server.log()
