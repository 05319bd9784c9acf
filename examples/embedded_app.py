"""An aiohttp application of its own, with broadcaster's fan-out inside it.

    python examples/embedded_app.py --port 8080

- `POST /orders` (the application's route; its middleware wants `X-User`):
  publishes the body on the `orders` topic, as an `order` event, and answers
  the event's id.
- `GET /my-events` (the application's route, same middleware): the user's
  stream of `orders` and their own topic, `user.<name>`, through
  `broadcaster.events_response`.
- `/sse/events`, `/sse/publish`, `/sse/healthz`, `/sse/metrics`: broadcaster's
  own routes, mounted by `broadcaster.setup`.

Try it: `curl -N -H 'X-User: ann' localhost:8080/my-events`, then
`curl -H 'X-User: bob' -d '2 pens' localhost:8080/orders`.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from aiohttp import web

import broadcaster

USER = web.RequestKey("user", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def require_user(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stands in for real authentication. broadcaster's own routes have theirs
    (a publish token, JWTs for private topics), so they pass untouched."""
    if request.path.startswith("/sse/"):
        return await handler(request)
    user = request.headers.get("X-User", "")
    if not user.isalnum():
        raise web.HTTPUnauthorized(text="send X-User: <your name>\n")
    request[USER] = user
    return await handler(request)


async def place_order(request: web.Request) -> web.Response:
    broker = request.app[broadcaster.BROKER]
    item = (await request.text()).strip() or "something"
    event = await broker.publish("orders", f"{request[USER]} ordered {item}", event="order")
    return web.json_response({"id": str(event.id)})


async def my_events(request: web.Request) -> web.StreamResponse:
    topics = ["orders", f"user.{request[USER]}"]
    return await broadcaster.events_response(request, topics=topics)


def make_app(settings: broadcaster.Settings | None = None) -> web.Application:
    app = web.Application(middlewares=[require_user])
    app.router.add_post("/orders", place_order)
    app.router.add_get("/my-events", my_events)
    broadcaster.setup(app, settings, prefix="/sse")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        # A client that leaves is unsubscribed at once rather than at the next
        # event; broadcaster ends open streams itself, so a short grace will do.
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
