"""How far behind the event loop runs: the delay any event now faces before its
fan-out, measured while publishing goes on by a timer that should fire every
`INTERVAL` seconds.

When more is published than the server can fan out, the excess waits somewhere
(unread in the publishers' sockets, in aiohttp's queue of pipelined requests,
behind a long fan-out), and every loop turn grows longer. The timer's lateness
shows the last; `edge/arrivals.py` dates each request by when its bytes came,
which shows the others. `POST /publish` refuses with 503 once either passes
`--max-publish-lag-ms`, so the backlog stops growing before the latency it
causes passes the bound.
"""

from __future__ import annotations

import asyncio
import time

INTERVAL = 0.01
KEEP = 1.0
"""Seconds it goes on measuring after the last publish: an idle server's loop
is not woken 100 times a second for nobody."""


class LoopLag:
    """The loop's lateness while publishing goes on: the last measured, or the
    current one if the timer is overdue now (a stall is seen while it lasts,
    not only after). 0 while nobody publishes."""

    __slots__ = ("_due", "_last", "_wanted", "_wanted_until")

    def __init__(self) -> None:
        self._last = 0.0
        self._due: float | None = None
        self._wanted_until = 0.0
        self._wanted = asyncio.Event()

    @property
    def measuring(self) -> bool:
        return self._due is not None

    def seconds(self) -> float:
        if self._due is None:
            return 0.0
        return max(self._last, time.perf_counter() - self._due)

    def wanted(self) -> None:
        """Someone publishes: measure for the next KEEP seconds."""
        self._wanted_until = time.perf_counter() + KEEP
        self._wanted.set()

    async def run(self) -> None:
        """Measure whenever wanted, until cancelled."""
        try:
            while True:
                if time.perf_counter() >= self._wanted_until:
                    self._due, self._last = None, 0.0
                    self._wanted.clear()
                    await self._wanted.wait()
                self._due = time.perf_counter() + INTERVAL
                await asyncio.sleep(INTERVAL)
                now = time.perf_counter()
                self._last = max(0.0, now - self._due)
                if self._last > INTERVAL:
                    # A stall outlasting KEEP must still be seen by the
                    # publishes that waited it out, which run after this.
                    self._wanted_until = max(self._wanted_until, now + KEEP)
        finally:
            self._due = None
