"""broadcaster embedded in an aiohttp application, as `setup` is meant to be used.

The application's own handlers serve the harness's two endpoints: `GET /events`
streams with `broadcaster.events_response` (so every stream takes aiohttp's
handler path, there being no front door), and `POST /publish` publishes through
the broker. Served by `web.run_app` with what the README asks of an embedding
application (`handler_cancellation=True`), and with the standalone server's
loop (uvloop) and backlog (4096), so the figures differ by the path alone.

usage: python -m bench.baselines.embedded PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

import broadcaster

SETTINGS = broadcaster.Settings(tick_interval=86400, max_clients=20_000)


async def events(request: web.Request) -> web.StreamResponse:
    return await broadcaster.events_response(request)


async def publish(request: web.Request) -> web.Response:
    body = await request.json()
    event = await request.app[broadcaster.BROKER].publish(body["topic"], body["data"])
    return web.json_response({"id": str(event.id)})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/events", events)
    app.router.add_post("/publish", publish)
    broadcaster.setup(app, SETTINGS)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        backlog=4096,
        handler_cancellation=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
