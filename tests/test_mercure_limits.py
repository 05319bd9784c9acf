"""The Mercure hub's limits, in process: the cap on distinct live URL patterns."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from broadcaster.app import create_app
from broadcaster.fanout import mercure_router
from broadcaster.ops.config import Settings

HUB = "/.well-known/mercure"
QUIET = Settings(tick_interval=3600, heartbeat_interval=3600, history=5)
Client = TestClient[web.Request, web.Application]


async def test_a_subscription_past_the_pattern_cap_is_refused_with_503(
    aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mercure_router, "MAX_PATTERNS", 2, raising=False)
    client: Client = await aiohttp_client(create_app(QUIET))
    live = [("match_urlpattern", "/books/:id"), ("match_urlpattern", "/authors/:id")]
    async with client.get(f"{HUB}?{urlencode(live)}") as following:
        assert following.status == 200
        await following.content.readuntil(b": connected\n\n")
        query = urlencode([("match_urlpattern", "/films/:id")])
        async with client.get(f"{HUB}?{query}") as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"].isdigit()
            assert "at most 2" in json.loads(await refused.text())["error"]
        async with client.get(f"{HUB}?{urlencode(live[:1])}") as again:
            assert again.status == 200  # a pattern already followed is no new one
