"""Typed keys for what the app shares with its handlers."""

from __future__ import annotations

from aiohttp import web

from broadcaster.broker import Broker
from broadcaster.config import Settings
from broadcaster.jobs import Jobs
from broadcaster.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
METRICS = web.AppKey("metrics", Metrics)
JOBS = web.AppKey("jobs", Jobs)
