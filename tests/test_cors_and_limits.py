"""CORS is closed unless allowed by name; every limit is a setting with a clear 4xx."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broadcaster.app import create_app
from broadcaster.ops.config import Settings

ALLOWED = "https://app.example.com"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(tick_interval=3600, data_dir=tmp_path, cors_origins=(ALLOWED,))


async def test_cors_is_closed_to_origins_not_on_the_list(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    for headers in ({}, {"Origin": "https://evil.example"}):
        async with client.get("/healthz", headers=headers) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
            assert "Origin" in response.headers.getall("Vary")
    async with client.options("/publish", headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403
        assert "--cors-origins" in (await response.json())["error"]


async def test_cors_opens_to_an_allowed_origin(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings))
    origin = {"Origin": ALLOWED}
    async with client.options("/publish", headers=origin) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        assert "POST" in response.headers["Access-Control-Allow-Methods"]
    body = '{"topic": "t", "data": "x"}'
    async with client.post(
        "/publish", data=body, headers=origin | {"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    # Both streams carry the stream core's CORS headers, once each.
    for stream in ("/events", "/long?rows=1&delay=0"):
        async with client.get(stream, headers=origin) as response:
            assert response.headers.getall("Access-Control-Allow-Origin") == [ALLOWED]
            assert response.headers.getall("Access-Control-Allow-Credentials") == ["true"]
            assert response.headers.getall("Vary") == ["Origin"]


@pytest.mark.parametrize(
    ("overrides", "url", "words"),
    [
        ({"max_topics": 2}, "/events?topic=a&topic=b&topic=c", "at most 2 (--max-topics)"),
        ({"max_topic_length": 20}, "/events?topic=" + "t" * 21, "1 to 20 characters"),
        ({}, "/events?topic=" + "t" * 65, "1 to 64 characters"),
    ],
)
async def test_stream_limits(
    aiohttp_client: Any, settings: Settings, overrides: dict[str, Any], url: str, words: str
) -> None:
    client = await aiohttp_client(create_app(replace(settings, **overrides)))
    async with client.get(url) as response:
        assert response.status == 400
        assert words in (await response.json())["error"]


async def test_publish_topic_length_limit(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(replace(settings, max_topic_length=20)))
    body = '{"topic": "%s", "data": "x"}' % ("t" * 21)
    async with client.post(
        "/publish", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert "1 to 20 characters" in (await response.json())["error"]
