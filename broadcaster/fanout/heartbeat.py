"""One broker-wide heartbeat timer, instead of a timer per connection."""

from __future__ import annotations

import asyncio

from broadcaster.fanout.broker import Broker
from broadcaster.wire import sse
from broadcaster.wire.events import Frame

HEARTBEAT = Frame.of(sse.comment("heartbeat"))


async def run_heartbeat(broker: Broker, interval: float) -> None:
    """Send a comment to every stream so that proxies keep idle ones open.

    A stalled client's queue fills with heartbeats too, so it is evicted even
    when no events are published.
    """
    while True:
        await asyncio.sleep(interval)
        broker.broadcast(HEARTBEAT)
