"""`broadcaster publish` and `broadcaster listen` against the real server process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from broadcaster.client.listener import retry_after_seconds
from tests.conftest import ServerFactory, health, open_stream, wait_for

QUIET = ("--tick-interval", "3600", "--heartbeat-interval", "3600", "--retry-ms", "100")
URL_ENV = "BROADCASTER_URL"
TOKEN_ENV = "BROADCASTER_PUBLISH_TOKEN"
TOKEN_HINT = f"pass --token or set {TOKEN_ENV}"
LINE_TIMEOUT = 15.0
SECRET_ENV = "BROADCASTER_JWT_SECRET"
SECRET = "cli-secret-" + "k" * 40


def client_env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without the variables the clients read, plus `extra`."""
    read = (URL_ENV, TOKEN_ENV, "BROADCASTER_TOKEN", SECRET_ENV)
    scrubbed = {k: v for k, v in os.environ.items() if k not in read}
    return scrubbed | (extra or {})


async def cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=client_env(env),
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    finally:
        if proc.returncode is None:  # timed out: a command that should have ended
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Listener:
    """A running `broadcaster listen`: its output lines, and its notes on stderr."""

    proc: asyncio.subprocess.Process

    async def line(self) -> str:
        assert self.proc.stdout is not None
        return await self._read(self.proc.stdout)

    async def json(self) -> dict[str, str | None]:
        event: dict[str, str | None] = json.loads(await self.line())
        return event

    async def notes_until(self, last: Callable[[str], bool]) -> list[str]:
        """stderr lines up to and including the first for which `last` is true."""
        assert self.proc.stderr is not None
        notes = [await self._read(self.proc.stderr)]
        while not last(notes[-1]):
            notes.append(await self._read(self.proc.stderr))
        return notes

    async def _read(self, pipe: asyncio.StreamReader) -> str:
        line = await asyncio.wait_for(pipe.readline(), LINE_TIMEOUT)
        assert line, f"listen exited with status {await self.proc.wait()}"
        return line.decode().rstrip("\n")


@asynccontextmanager
async def listening(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Listener]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", "listen", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=client_env(env),
    )  # fmt: skip
    try:
        yield Listener(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def published(url: str, topic: str, data: str) -> str:
    code, out, err = await cli("publish", "--url", url, "--topic", topic, data)
    assert (code, err) == (0, "")
    return out.strip()


async def test_publish_prints_the_id(server_process: ServerFactory) -> None:
    server = server_process(*QUIET)
    code, out, err = await cli("publish", "--url", server.url, "--topic", "orders", "hello")
    assert (code, err) == (0, "")
    assert out.strip().split("-")[1] == "1"


async def test_publish_errors_are_one_clear_line(server_process: ServerFactory) -> None:
    server = server_process(*QUIET, "--publish-token", "s3cret")
    code, _, err = await cli("publish", "--url", server.url, "--topic", "t", "--token", "no", "x")
    assert (code, err) == (
        1,
        f"broadcaster publish: server answered 403: wrong publish token; {TOKEN_HINT}\n",
    )
    code, _, err = await cli("publish", "--url", server.url, "--topic", "t", "x")
    assert (code, err) == (
        1,
        f"broadcaster publish: server answered 401: a publish token is required; {TOKEN_HINT}\n",
    )
    code, _, err = await cli(
        "publish", "--url", server.url, "--topic", "bad topic", "x", env={TOKEN_ENV: "s3cret"}
    )
    assert code == 1
    assert err.startswith("broadcaster publish: server answered 400: invalid topic 'bad topic'")
    refused = f"http://127.0.0.1:{unused_port()}"
    code, _, err = await cli("publish", "--url", refused, "--topic", "t", "x")
    assert (code, err) == (
        1,
        f"broadcaster publish: cannot connect to {refused}: connection refused\n",
    )
    code, _, err = await cli("publish", "--url", f"{server.url}/foo", "--topic", "t", "x")
    assert (code, err) == (
        1,
        f"broadcaster publish: {server.url}/foo answered 404: Not Found; "
        "is --url the server's address?\n",
    )
    tls = server.url.replace("http://", "https://")
    code, _, err = await cli("publish", "--url", tls, "--topic", "t", "x")
    assert code == 1
    assert err.endswith("it speaks plain HTTP, not TLS: use http://, not https://\n"), err


async def test_publish_reads_the_data_from_stdin_for_a_dash(server_process: ServerFactory) -> None:
    server = server_process(*QUIET)
    text = "café\nsecond line\n"
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=t") as stream,
    ):
        code, out, err = await cli(
            "publish", "--url", server.url, "--topic", "t", "-", stdin=text.encode()
        )
        assert (code, err) == (0, "")
        [event] = await stream.until(lambda e: e.event == "message")
    assert (event.id, event.data) == (out.strip(), text)
    code, _, err = await cli("publish", "--url", server.url, "--topic", "t", "-", stdin=b"caf\xe9!")
    assert (code, err) == (
        1,
        "broadcaster publish: stdin is not UTF-8 text: invalid continuation byte at byte 3\n",
    )


async def test_publish_without_data_sends_stdin_as_one_batch(server_process: ServerFactory) -> None:
    server = server_process(*QUIET)
    lines = [
        {"data": "default topic"},
        {"topic": "u", "data": {"n": 2}, "event": "counted"},
        {"data": "third", "event": "own"},
    ]
    stdin = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    async with (
        aiohttp.ClientSession() as session,
        open_stream(session, f"{server.url}/events?topic=t&topic=u") as stream,
    ):
        code, out, err = await cli(
            "publish", "--url", server.url, "--topic", "t", "--event", "e", stdin=stdin.encode()
        )
        assert (code, err) == (0, "")
        got = await stream.until(lambda e: e.data == "third")
    sent = [e for e in got if e.event != "resync"]
    assert [(e.id, e.event, e.data) for e in sent] == list(
        zip(
            out.split(),
            ["e", "counted", "own"],
            ["default topic", '{"n": 2}', "third"],
            strict=True,
        )
    )
    # All or nothing: the second line has no topic, so nothing is published.
    code, out, err = await cli(
        "publish", "--url", server.url, stdin=b'{"topic":"t","data":"a"}\n{"data":"b"}'
    )
    assert (code, out) == (1, "")
    assert err.startswith(
        "broadcaster publish: server answered 400: item 2 (line 2): field 'topic'"
    )
    code, _, err = await cli("publish", "--url", server.url, stdin=b'{"topic":"t"\n')
    assert (code, err[:50]) == (1, "broadcaster publish: stdin line 1 is not JSON: Exp")
    code, _, err = await cli("publish", "--url", server.url, "x")
    assert code == 2
    assert err.endswith("broadcaster publish: error: --topic is required with DATA\n")


async def test_both_commands_take_the_url_from_the_environment(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    from_env = {URL_ENV: server.url}
    code, _, err = await cli("publish", "--topic", "t", "x", env=from_env)
    assert (code, err) == (0, "")
    # --url wins over the variable.
    refused = {URL_ENV: f"http://127.0.0.1:{unused_port()}"}
    code, _, err = await cli("publish", "--url", server.url, "--topic", "t", "x", env=refused)
    assert (code, err) == (0, "")
    async with listening("--json", "--topic", "t", env=from_env) as listener:
        await _wait_subscribed(server.url)
        event_id = await published(server.url, "t", "via env")
        assert await listener.json() == {"id": event_id, "event": "message", "data": "via env"}
    code, _, err = await cli("publish", "--topic", "t", "x", env={URL_ENV: "localhost:8000"})
    assert (code, err) == (
        1,
        f"broadcaster publish: {URL_ENV} 'localhost:8000' needs http:// or https://;"
        " did you mean http://localhost:8000?\n",
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:18201", "'127.0.0.1:18201' needs http:// or https://; did you mean http://127.0.0.1:18201?"),
        ("ftp://127.0.0.1:18201/", "'ftp://127.0.0.1:18201/' is not an http:// or https:// URL"),
        ("http://", "'http://' has no valid host name"),
        ("http://h:99999", "'http://h:99999' is not a valid URL: Port out of range"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["publish", "listen"])
async def test_a_malformed_url_is_one_line_and_no_retry(command: str, url: str, says: str) -> None:
    data = ["--topic", "t", "x"] if command == "publish" else []
    code, out, err = await cli(command, "--url", url, *data)
    assert (code, out) == (1, "")
    assert err.startswith(f"broadcaster {command}: --url {says}")
    assert err.count("\n") == 1


async def test_listen_ends_on_a_client_error_with_the_servers_words(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    code, out, err = await cli("listen", "--topic", "bad topic", "--url", server.url)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"broadcaster listen: {server.url}/events answered 400: invalid topic 'bad topic': "
    )
    assert err.count("\n") == 1
    code, out, err = await cli("listen", "--url", f"{server.url}/nope")
    assert (code, out, err) == (
        1,
        "",
        f"broadcaster listen: {server.url}/nope answered 404: Not Found\n",
    )


@pytest.mark.parametrize(
    ("status", "content_type", "says"),
    [
        (204, None, "answered 204: No Content"),
        (200, "text/html", "is not an event stream: it answered text/html"),
    ],
)
async def test_listen_stops_on_answers_that_retrying_cannot_change(
    status: int, content_type: str | None, says: str
) -> None:
    """Not what broadcaster answers, but what a proxy or a wrong URL may."""

    async def answer(request: web.Request) -> web.Response:
        body = "<p>hi</p>" if content_type else None
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/events", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        code, out, err = await cli("listen", "--url", f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    assert (code, out) == (1, "")
    assert err == f"broadcaster listen: http://127.0.0.1:{port}/events {says}\n"


async def test_listen_waits_out_a_full_server_and_gets_in_when_a_slot_frees(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET, "--max-clients", "1")
    async with aiohttp.ClientSession() as session:
        holder = await session.get(f"{server.url}/events?topic=t")
        assert holder.status == 200
        async with listening("--json", "--topic", "t", "--url", server.url) as listener:
            notes = await listener.notes_until(lambda note: "reconnecting" in note)
            assert notes == [
                f"broadcaster listen: {server.url}/events answered 503: "
                "server is at its limit of 1 client; retry later",
                "broadcaster listen: reconnecting in 5s",  # the server's Retry-After
            ]
            holder.close()
            await _wait_clients(server.url, 0)
            await _wait_subscribed(server.url)
            event_id = await published(server.url, "t", "in at last")
            assert await listener.json() == {
                "id": event_id,
                "event": "message",
                "data": "in at last",
            }


async def test_listen_keeps_trying_until_the_server_is_up(server_process: ServerFactory) -> None:
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    async with listening("--json", "--topic", "t", "--url", url) as listener:
        notes = await listener.notes_until(lambda note: "reconnecting" in note)
        assert notes == [
            f"broadcaster listen: cannot connect to {url}: connection refused",
            "broadcaster listen: reconnecting in 1s",
        ]
        server = server_process(*QUIET, port=port)
        await _wait_subscribed(server.url)
        event_id = await published(server.url, "t", "up")
        assert await listener.json() == {"id": event_id, "event": "message", "data": "up"}


async def test_listen_shows_no_borrowed_id_on_the_shutdown_event(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    async with listening("--topic", "t", "--url", server.url) as listener:
        await _wait_subscribed(server.url)
        event_id = await published(server.url, "t", "one")
        assert await listener.line() == f"[{event_id}] message: one"
        event_id = await published(server.url, "t", "two\nlines")
        assert await listener.line() == f"[{event_id}] message: two"
        assert await listener.line() == "    lines"
        await asyncio.to_thread(server.terminate)
        assert await listener.line() == 'shutdown: {"reason": "server shutting down"}'


async def test_listen_follows_across_a_restart_and_sees_resync(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    async with listening("--json", "--topic", "t", "--url", server.url) as listener:
        await _wait_subscribed(server.url)
        first_id = await published(server.url, "t", "one")
        assert await listener.json() == {"id": first_id, "event": "message", "data": "one"}
        await asyncio.to_thread(server.terminate)
        shutdown = await listener.json()
        assert (shutdown["event"], shutdown["id"]) == ("shutdown", None)
        restarted = server_process(*QUIET, port=server.port)
        resync = await listener.json()
        assert resync["event"] == "resync"
        assert resync["data"] is not None
        assert "not in this server's history" in json.loads(resync["data"])["reason"]
        second_id = await published(restarted.url, "t", "two")
        assert await listener.json() == {"id": second_id, "event": "message", "data": "two"}


async def test_listen_still_takes_the_url_as_an_argument_but_says_use_url(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET)
    async with listening("--json", "--topic", "t", server.url) as listener:
        assert await listener.notes_until(lambda _: True) == [
            "broadcaster listen: a URL without --url is deprecated; use --url URL"
        ]
        await _wait_subscribed(server.url)
        event_id = await published(server.url, "t", "old style")
        assert await listener.json() == {"id": event_id, "event": "message", "data": "old style"}
    code, _, err = await cli("listen", "--url", server.url, server.url)
    assert code == 2
    assert err.endswith("broadcaster listen: error: give the server URL once, with --url\n")


async def test_help_lists_the_commands_and_shows_unset_defaults() -> None:
    code, out, err = await cli("--help")
    assert (code, err) == (0, "")
    assert out.startswith(
        "usage: broadcaster [options]\n"
        "       broadcaster publish [--topic T] [--event E] [--url URL] [--token TOKEN] [DATA]\n"
        "       broadcaster listen [--topic T ...] [--json] [--url URL] [--token TOKEN]\n"
        "       broadcaster token [--sub-topic P ...] [--pub-topic P ...] [--ttl SECONDS]"
        " [--jwt-secret S]\n"
    )
    words = " ".join(out.split())
    assert "None" not in words
    assert "()" not in words
    assert "(env BROADCASTER_PUBLISH_TOKEN; default unset)" in words


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("pubish", "unknown command 'pubish'; did you mean 'publish'?"),
        ("lsiten", "unknown command 'lsiten'; did you mean 'listen'?"),
        ("serve", "unknown command 'serve'; the commands are publish, listen and token"),
    ],
)
async def test_a_mistyped_command_gets_a_suggestion(word: str, says: str) -> None:
    code, out, err = await cli(word, "--topic", "t", "x")
    assert (code, out) == (2, "")
    assert err.startswith("usage: broadcaster [options]\n")
    assert err.endswith(f"broadcaster: error: {says}\n")
    # Only a first bare word is a command: after a server option it is that option's value.
    code, _, err = await cli("--port", word)
    assert code == 2
    assert err.endswith(f"broadcaster: error: argument --port: {word!r} is not a valid int\n")


async def _wait_subscribed(base: str) -> None:
    await _wait_clients(base, 1)


async def _wait_clients(base: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:

        async def reached() -> bool:
            return (await health(session, base))["clients"] == count

        await wait_for(reached, 10, f"{count} client(s) on the server")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 12 ", 12.0),
        ("soon", None),
        ("-3", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date already past: no wait
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header) == seconds


async def test_listen_ends_quietly_when_its_reader_leaves(server_process: ServerFactory) -> None:
    """As in `broadcaster listen | head -n 1`."""
    server = server_process(*QUIET)
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broadcaster", "listen", "--topic", "t", "--url", server.url,
        stdout=write_end, stderr=asyncio.subprocess.PIPE, env=client_env(None),
    )  # fmt: skip
    os.close(write_end)
    try:
        reading = asyncio.create_task(asyncio.to_thread(_first_line_then_leave, read_end))
        await _wait_subscribed(server.url)
        first = await published(server.url, "t", "one")
        line = await asyncio.wait_for(reading, LINE_TIMEOUT)
        assert line.decode() == f"[{first}] message: one\n"
        await published(server.url, "t", "two")
        _, err = await asyncio.wait_for(proc.communicate(), LINE_TIMEOUT)
        assert (proc.returncode, err.decode()) == (1, "")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _first_line_then_leave(fd: int) -> bytes:
    with open(fd, "rb") as reader:
        return reader.readline()


async def test_minted_tokens_let_listen_and_publish_use_private_topics(
    server_process: ServerFactory,
) -> None:
    server = server_process(*QUIET, "--private-topics", "user.*", env={SECRET_ENV: SECRET})
    code, reader, err = await cli("token", "--sub-topic", "user.1.*", env={SECRET_ENV: SECRET})
    assert (code, err) == (0, "")
    code, writer, err = await cli(
        "token", "--pub-topic", "user.1.*", "--ttl", "60", "--jwt-secret", SECRET
    )
    assert (code, err) == (0, "")
    async with listening("--url", server.url, "--topic", "user.1.inbox", "--json",
                         "--token", reader.strip()) as listener:  # fmt: skip
        await _wait_subscribed(server.url)
        code, _, err = await cli(
            "publish",
            "--url",
            server.url,
            "--topic",
            "user.1.inbox",
            "--token",
            writer.strip(),
            "hi",
        )
        assert (code, err) == (0, "")
        assert (await listener.json())["data"] == "hi"
    code, _, err = await cli("listen", "--url", server.url, "--topic", "user.2", "--token", reader)
    assert (code, err) == (
        1,
        f"broadcaster listen: {server.url}/events answered 403: "
        "the token does not allow subscribing to 'user.2'\n",
    )
    code, _, err = await cli(
        "publish", "--url", server.url, "--topic", "user.1.x", "--token", writer.strip() + "x", "hi"
    )
    assert (code, err) == (
        1,
        "broadcaster publish: server answered 401: the token's signature does not verify\n",
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--sub-topic", "a"], "no secret to sign with: pass --jwt-secret or set " + SECRET_ENV),
        (["--jwt-secret", "short", "--sub-topic", "a"], "at least 32 bytes"),
        (["--jwt-secret", SECRET], "the token would allow nothing"),
        (["--jwt-secret", SECRET, "--sub-topic", "a*b"], "invalid topic pattern 'a*b'"),
        (["--jwt-secret", SECRET, "--sub-topic", "a", "--ttl", "-1"], "--ttl -1: give more than 0"),
        (["--jwt-secret", SECRET, "--sub-topic", "a", "--ttl", "0"], "--ttl 0: give more than 0"),
    ],
)
async def test_token_errors_are_one_line(args: list[str], says: str) -> None:
    code, out, err = await cli("token", *args)
    assert (code, out) == (1, "")
    assert err.startswith("broadcaster token: ")
    assert says in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["listen", "publish"])
async def test_a_mistyped_option_gets_the_command_s_usage_and_a_suggestion(command: str) -> None:
    code, out, err = await cli(command, "--topc", "orders", "x")
    assert (code, out) == (2, "")
    assert err.startswith(f"usage: broadcaster {command}"), err
    assert "unrecognized arguments: --topc" in err
    assert "(did you mean --topic?)" in err
