"""The time ticker: the Go example's publisher of "the time is ..." messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from broadcaster.fanout.broker import BackendUnavailable, Broker
from broadcaster.wire.topics import DEFAULT_TOPIC

log = logging.getLogger("broadcaster.ticker")

TOPIC = DEFAULT_TOPIC
EVENT_TYPE = "tick"


def time_message(now: datetime) -> str:
    return f"the time is {now:%Y-%m-%d %H:%M:%S} UTC"


async def run_ticker(
    broker: Broker, interval: float, on_late: Callable[[float], None] | None = None
) -> None:
    """Publish one message per `interval`, on a fixed schedule that does not drift.

    When the loop falls behind by more than an interval, missed ticks are skipped
    rather than sent in a burst. `on_late` gets each tick's lateness in seconds:
    how long a busy event loop kept it from running on time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        deadline += interval
        now = loop.time()
        if deadline < now:
            deadline = now
        await asyncio.sleep(deadline - now)
        if on_late is not None:
            on_late(loop.time() - deadline)
        if not broker.leads_ticker():
            continue  # another instance ticks
        try:
            event = await broker.publish(TOPIC, time_message(datetime.now(UTC)), EVENT_TYPE)
        except BackendUnavailable as error:
            log.debug("Tick not sent: %s", error)
            continue
        log.log(logging.INFO if broker.client_count else logging.DEBUG, "Sent message %s", event.id)
