"""broadcaster: a fan-out publish/subscribe server over Server-Sent Events, and
a library for putting the same fan-out into an aiohttp application of one's own.

The public API is what `__all__` names (README, "Use it in your own aiohttp
app" and "Python client"); everything else may change. Names are loaded on
first use, so `python -m broadcaster.jobs.xlsx`, the import's memory-capped
child, does not pay for the server to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broadcaster import client
    from broadcaster.app import create_app, setup
    from broadcaster.fanout.broker import BackendUnavailable, Broker
    from broadcaster.ops.config import Settings
    from broadcaster.web.keys import BROKER
    from broadcaster.web.stream import events_response
    from broadcaster.wire.events import Event, EventId
    from broadcaster.wire.topics import InvalidTopic

__all__ = [
    "BROKER",
    "BackendUnavailable",
    "Broker",
    "Event",
    "EventId",
    "InvalidTopic",
    "Settings",
    "client",
    "create_app",
    "events_response",
    "setup",
]

_HOMES = {
    "BROKER": "broadcaster.web.keys",
    "BackendUnavailable": "broadcaster.fanout.broker",
    "Broker": "broadcaster.fanout.broker",
    "Event": "broadcaster.wire.events",
    "EventId": "broadcaster.wire.events",
    "InvalidTopic": "broadcaster.wire.topics",
    "Settings": "broadcaster.ops.config",
    "create_app": "broadcaster.app",
    "events_response": "broadcaster.web.stream",
    "setup": "broadcaster.app",
}


def __getattr__(name: str) -> Any:
    if name == "client":
        return importlib.import_module("broadcaster.client")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'broadcaster' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
