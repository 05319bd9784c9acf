"""Errors aiohttp raises by itself are JSON too, and a bug never leaks a traceback."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broadcaster.app import create_app
from broadcaster.ops.config import Settings


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


async def test_unhandled_error_is_a_json_500_without_details(aiohttp_client: Any) -> None:
    app = create_app(Settings(tick_interval=3600))
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    async with client.get("/boom") as response:
        assert response.status == 500
        assert response.content_type == "application/json"
        body = await response.json()
    assert body == {"error": "Internal Server Error", "status": 500}


async def test_pages_carry_security_headers_and_streams_do_not(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(Settings(tick_interval=3600)))
    async with client.get("/") as page:
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    async with client.get("/events") as stream:
        assert "Content-Security-Policy" not in stream.headers
