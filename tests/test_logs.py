"""The server log, read from the real process: quiet where nothing happens, loud
where something does, and one access-line format for everything."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import aiohttp
import pytest

from broadcaster.ops.logs import Summarised
from tests.conftest import ServerFactory, ServerProcess, open_stream, wait_for

QUIET = ("--tick-interval", "3600", "--heartbeat-interval", "3600")


async def _logged(server: ServerProcess, pattern: str) -> None:
    async def seen() -> bool:
        return re.search(pattern, server.log(), re.M) is not None

    await wait_for(seen, 10, f"{pattern!r} in the log")


async def _ticks_published(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    found = re.search(r'^broadcaster_events_published_total\{topic="time"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def test_ticks_with_nobody_connected_and_polling_stay_out_of_the_info_log(
    server_process: ServerFactory,
) -> None:
    server = server_process("--tick-interval", "0.02")
    async with aiohttp.ClientSession() as session:

        async def ticked() -> bool:
            return await _ticks_published(session, server.url) >= 5

        await wait_for(ticked, 10, "five ticks")
        for path in ("/healthz", "/healthz", "/metrics", "/static/app.js", "/favicon.ico"):
            async with session.get(f"{server.url}{path}") as response:
                assert response.status == 200
        # Same keep-alive connection: this line is written after the polls' would be.
        async with session.get(f"{server.url}/no-such-page") as response:
            assert response.status == 404
        await _logged(server, r'"GET /no-such-page" 404 \d+ \d+\.\d{3}s$')
    log = server.log()
    assert "Sent message" not in log
    assert "Broadcast message" not in log
    assert "/healthz" not in log
    assert "/metrics" not in log
    assert "/static/" not in log
    assert "/favicon.ico" not in log


async def test_a_tick_with_one_client_says_one_client(server_process: ServerFactory) -> None:
    server = server_process("--tick-interval", "0.05")
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events") as stream,
    ):
        (tick,) = await stream.events(1)
    await _logged(server, rf"INFO +broadcaster.broker: Broadcast message {tick.id} to 1 client$")
    await _logged(server, rf"INFO +broadcaster.ticker: Sent message {tick.id}$")


async def test_a_refused_stream_is_a_warning_in_the_access_format(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET, "--max-clients", "1")
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events"),
        session.get(f"{server.url}/events?topic=time") as refused,
    ):
        assert refused.status == 503
    await _logged(
        server, r'WARNING broadcaster.access: 127.0.0.1 "GET /events\?topic=time" 503 \d+ [\d.]+s$'
    )
    await _logged(
        server, r'INFO +broadcaster.access: 127.0.0.1 "GET /events" 200 - [\d.]+s, stream ended: '
    )


async def test_shutdown_says_how_many_clients_were_told(server_process: ServerFactory) -> None:
    idle = server_process(*QUIET)
    await asyncio.to_thread(idle.terminate)
    assert re.search(
        r"INFO +broadcaster.broker: Shutting down: telling 0 clients$", idle.log(), re.M
    )

    busy = server_process(*QUIET)
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{busy.url}/events") as stream,
    ):
        await asyncio.to_thread(busy.terminate)
        assert [e.event for e in await stream.rest()] == ["shutdown"]
    assert re.search(r"Shutting down: telling 1 client$", busy.log(), re.M)


def test_json_log_format_is_one_object_per_line(server_process: ServerFactory) -> None:
    server = server_process("--log-format", "json", "--tick-interval", "0.05")
    server.terminate()
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    messages = [line["message"] for line in lines]
    assert any(m.startswith("Running on http://127.0.0.1:") for m in messages)
    assert "No publish token set: only loopback clients may publish" in messages


async def test_a_malformed_request_is_one_warning_that_quotes_nothing(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"q" * 20_000 + b"\r\n\r\n")
    assert (await reader.read()).startswith(b"HTTP/1.0 431 ")
    writer.close()
    await _logged(
        server,
        r"WARNING broadcaster.access: Refused a malformed request from 127.0.0.1: "
        r"431 a header is longer than \d+ bytes$",
    )
    await _logged(server, r'"UNKNOWN /" 431 \d+ [\d.]+s$')
    log = server.log()
    assert "qqqq" not in log
    assert "Error handling request" not in log


async def test_a_long_stream_cut_by_shutdown_leaves_its_access_line(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/long?rows=100&step=10&delay=1") as stream,
    ):
        await asyncio.to_thread(server.terminate)
        assert [e.event for e in await stream.rest()] == ["shutdown"]
    assert re.search(
        r'INFO +broadcaster.access: 127.0.0.1 "GET /long\?rows=100&step=10&delay=1" 200 ',
        server.log(),
    )


def test_a_warning_repeated_thousands_of_times_is_written_once_then_summed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.summarised")
    summarised = Summarised(logger, every=0.05)
    with caplog.at_level(logging.WARNING, logger="test.summarised"):
        for _ in range(1_000):
            summarised.warning("refused")
        time.sleep(0.06)  # the window passing is the scenario, not a wait for something
        summarised.warning("refused")
    assert [r.getMessage() for r in caplog.records] == [
        "refused",
        "refused (and 999 more like it since the last such line)",
    ]


async def test_throttled_publishes_are_summed_up_not_each_a_warning(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET, "--max-publish-lag-ms", "100")
    publish = (
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 24\r\n\r\n{"topic":"t","data":"x"}'
    )
    # Slow work that holds the connection 0.6 s, with publishes queued behind it.
    slow = b"GET /long?rows=2&step=1&delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        slow + publish * 20 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answers = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answers.count(b"HTTP/1.1 503 ") == 20
    await _logged(server, r'INFO +broadcaster.access: 127.0.0.1 "POST /publish" 503 ')
    refusals = re.findall(
        r"WARNING broadcaster.publish: Publishing refused, too busy", server.log()
    )
    assert len(refusals) == 1
    assert 'WARNING broadcaster.access: 127.0.0.1 "POST /publish" 503' not in server.log()
