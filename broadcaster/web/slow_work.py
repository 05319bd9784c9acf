"""GET /long: the streaming demo of slow work, one SSE frame per step, then `done`."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from broadcaster.web.errors import ApiError
from broadcaster.web.keys import SETTINGS, STOPPING
from broadcaster.web.stream_core import SHUTDOWN_DATA, response_headers
from broadcaster.wire import sse

MAX_ROWS = 100_000_000
MAX_STEPS = 10_000
MAX_DELAY = 60.0
MAX_SECONDS = 3600.0


PARAMETERS = ("rows", "step", "delay")


def _check_names(request: web.Request) -> None:
    for name in request.query:
        if name not in PARAMETERS:
            raise ApiError(
                400, f"unknown parameter {name[:32]!r}; expected {', '.join(PARAMETERS)}"
            )
        if len(request.query.getall(name)) > 1:
            raise ApiError(400, f"{name} is given more than once")


def _number(
    request: web.Request, name: str, default: float, low: float, high: float, kind: type = float
) -> float:
    text = request.query.get(name)
    if text is None:
        return default
    noun = "a whole number" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise ApiError(400, f"{name} must be {noun}, not {text[:32]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {_plain(low)} to {_plain(high)}, not {text[:32]}")
    return float(value)


def _plain(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def stream_slow_work(request: web.Request) -> web.StreamResponse:
    _check_names(request)
    rows = int(_number(request, "rows", 50_000, 1, MAX_ROWS, int))
    step = int(_number(request, "step", 10_000, 1, MAX_ROWS, int))
    delay = _number(request, "delay", 1.0, 0, MAX_DELAY)
    steps = -(-rows // step)
    if steps > MAX_STEPS:
        raise ApiError(400, f"{steps} steps of {step} rows; at most {MAX_STEPS}: raise step")
    if steps * delay > MAX_SECONDS:
        raise ApiError(400, f"would run {steps * delay:g} s; at most {MAX_SECONDS:g} s")
    # A plain StreamResponse sends its headers at `prepare`, so the client sees
    # the stream open now rather than after the first step.
    origin = request.headers.get("Origin")
    response = web.StreamResponse(
        headers=response_headers(origin, request.app[SETTINGS].cors_origins)
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    started, done = loop.time(), 0
    stopping = request.app[STOPPING]
    while done < rows:
        if await _set_within(stopping, delay):  # the delay stands for a slice of real work
            await response.write(SHUTDOWN_DATA)
            return response
        done = min(rows, done + step)
        elapsed = _seconds(loop.time() - started)
        line = f"Rows done: {done} ({100 * done // rows}%), elapsed: {elapsed}s"
        await response.write(sse.encode(line, event="progress"))
    summary = {"rows": rows, "elapsed_s": round(loop.time() - started, 3)}
    await response.write(sse.encode(json.dumps(summary), event="done"))
    return response
