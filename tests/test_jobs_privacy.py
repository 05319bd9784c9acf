"""Jobs and private topics: the uploader gets a token for its job's topic, and
the public `jobs` announcements name no file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import aiohttp

from tests.conftest import ServerFactory, open_stream

SECRET = "jobs-secret-" + "j" * 40


def form(name: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("file", io.BytesIO(b"id,name\n1,one\n"), filename=name, content_type="text/csv")
    return data


async def test_a_private_job_topic_is_followed_with_the_token_its_upload_answer_gives(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    server = server_process(
        "--tick-interval", "3600", "--data-dir", str(tmp_path / "data"),
        "--private-topics", "job.*", env={"BROADCASTER_JWT_SECRET": SECRET},
    )  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=jobs") as announce,
    ):
        async with session.post(f"{server.url}/jobs", data=form("salaries.csv")) as response:
            assert response.status == 202
            answer = await response.json()
        (created,) = await announce.events(1)
        assert "salaries" not in created.data
        assert json.loads(created.data)["private"] is True
        url = server.url + answer["events_url"]
        async with session.get(url) as refused:
            assert refused.status == 401
        headers = {"Authorization": f"Bearer {answer['token']}"}
        async with open_stream(session, url, headers) as stream:
            events = await stream.until(lambda e: e.event == "done", timeout=30)
        assert json.loads(events[-1].data)["filename"] == "salaries.csv"
        async with session.get(f"{server.url}/jobs") as listed:
            assert (await listed.json())["jobs"] == []
        async with session.get(f"{server.url}/jobs", headers=headers) as listed:
            assert [job["private"] for job in (await listed.json())["jobs"]] == [True]
        async with session.get(server.url + answer["status_url"]) as status:
            assert status.status == 401
            assert "salaries" not in await status.text()
        async with session.get(server.url + answer["status_url"], headers=headers) as status:
            assert (await status.json())["filename"] == "salaries.csv"


async def test_public_jobs_get_no_token_and_announce_no_file_name(
    server_process: ServerFactory, tmp_path: Path
) -> None:
    server = server_process("--tick-interval", "3600", "--data-dir", str(tmp_path / "data"))
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=jobs") as announce,
    ):
        async with session.post(f"{server.url}/jobs", data=form("salaries.csv")) as response:
            answer = await response.json()
        (created,) = await announce.events(1)
    assert "token" not in answer
    state = json.loads(created.data)
    assert "filename" not in state
    assert state["private"] is False
