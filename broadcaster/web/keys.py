"""Typed keys for what the app shares with its handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from broadcaster.auth.policy import Policy
from broadcaster.fanout.broker import Broker
from broadcaster.fanout.mercure_router import Router
from broadcaster.jobs.registry import Jobs
from broadcaster.ops.config import Settings
from broadcaster.ops.lag import LoopLag
from broadcaster.ops.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
METRICS = web.AppKey("metrics", Metrics)
JOBS = web.AppKey("jobs", Jobs)
POLICY = web.AppKey("policy", Policy)
MERCURE = web.AppKey("mercure", Router)
LAG = web.AppKey("lag", LoopLag)
ARRIVED = web.RequestKey("arrived", float)
"""By when the request had arrived (`time.perf_counter`), where the server knows."""
THROTTLED = web.RequestKey("throttled", bool)
"""Refused by the publish throttle, which logs its refusals in summary."""
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set when the server starts shutting down: streams that are not the broker's
(`/long`) end on it."""
