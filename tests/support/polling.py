"""Waiting for what nothing announces: poll a condition, with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

POLL = 0.002


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    """Let the loop run until `condition()` holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(POLL)
