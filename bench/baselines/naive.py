"""The naive baseline every benchmark run measures alongside broadcaster.

The textbook aiohttp SSE server: an unbounded queue and a task per client, the
frame formatted per client, and `await resp.write` per message. Same endpoints
as broadcaster (`GET /events`, `POST /publish` with a JSON body), so the same
harness drives both. The default asyncio loop; the backlog is raised only so
that connection set-up does not dominate the scenarios that need 10,000 clients.

usage: python -m bench.baselines.naive PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

CLIENTS = web.AppKey("clients", set[asyncio.Queue[tuple[int, str]]])
SEQ = web.AppKey("seq", list[int])


async def events(request: web.Request) -> web.StreamResponse:
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    request.app[CLIENTS].add(queue)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    await response.write(b": connected\n\n")
    try:
        while True:
            seq, data = await queue.get()
            await response.write(f"id: {seq}\ndata: {data}\n\n".encode())
    finally:
        request.app[CLIENTS].discard(queue)


async def publish(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[SEQ][0] += 1
    seq = request.app[SEQ][0]
    for queue in request.app[CLIENTS]:
        queue.put_nowait((seq, body["data"]))
    return web.json_response({"id": str(seq)})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"clients": len(request.app[CLIENTS])})


def main() -> None:
    app = web.Application()
    app[CLIENTS] = set()
    app[SEQ] = [0]
    app.router.add_get("/events", events)
    app.router.add_post("/publish", publish)
    app.router.add_get("/healthz", healthz)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), backlog=4096, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
