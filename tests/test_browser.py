"""Real Chromium (Debian's), driven by Playwright, against the real server process."""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from broadcaster.wire.sse_parser import SSEParser
from tests.conftest import ARTIFACTS, ROOT, ServerFactory, ServerProcess, health, wait_for

pytestmark = pytest.mark.browser

TABS = 10


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    yield context
    await context.close()


@pytest.fixture
def server(server_process: ServerFactory) -> ServerProcess:
    return server_process("--tick-interval", "3600", "--heartbeat-interval", "3600")


async def open_tabs(context: BrowserContext, url: str, count: int) -> list[Page]:
    pages = []
    for _ in range(count):
        page = await context.new_page()
        await page.goto(url)
        await expect(page.locator("#state")).to_have_text("live", timeout=10_000)
        pages.append(page)
    return pages


async def publish(
    session: aiohttp.ClientSession,
    base: str,
    data: str,
    topic: str = "time",
    event: str | None = None,
) -> str:
    body = {"topic": topic, "data": data} | ({} if event is None else {"event": event})
    async with session.post(f"{base}/publish", json=body) as response:
        assert response.status == 200, await response.text()
        event_id: str = (await response.json())["id"]
        return event_id


async def shown_ids(page: Page) -> list[str]:
    ids: list[str] = await page.locator("#events li").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids


async def test_ten_tabs_share_one_connection_and_see_the_same_ids(
    context: BrowserContext, server: ServerProcess
) -> None:
    pages = await open_tabs(context, server.url, TABS)
    async with aiohttp.ClientSession() as session:
        assert (await health(session, server.url))["clients"] == 1
        sent = [await publish(session, server.url, f"hello {i}") for i in range(3)]
    for page in pages:
        await expect(page.locator("#events li")).to_have_count(3)
        assert await shown_ids(page) == sent[::-1]  # newest first
    await expect(pages[0].locator("#events li").first).to_contain_text("hello 2")
    # The server counts streams; the page says how many tabs share this one.
    await expect(pages[-1].locator("#clients")).to_have_text("1")
    await expect(pages[-1].locator("#tabs")).to_have_text(str(TABS))
    ARTIFACTS.mkdir(exist_ok=True)
    await pages[-1].screenshot(path=ARTIFACTS / "ten-tabs.png", full_page=True)


async def test_publishing_from_the_page_form_reaches_every_tab(
    context: BrowserContext, server: ServerProcess
) -> None:
    pages = await open_tabs(context, server.url, 3)
    form = pages[0].locator("#publish-form")
    await form.locator("input[name=data]").fill("from the form")
    await form.locator("button").click()
    await expect(pages[0].locator("#publish-result")).to_contain_text("published as")
    for page in pages:
        await expect(page.locator("#events li .data")).to_have_text(["from the form"])


async def test_html_in_a_payload_is_shown_as_text_and_never_runs(
    context: BrowserContext, server: ServerProcess
) -> None:
    (page,) = await open_tabs(context, server.url, 1)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    payload = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    async with aiohttp.ClientSession() as session:
        await publish(session, server.url, payload)
    await expect(page.locator("#events li .data")).to_have_text([payload])
    assert await page.locator("#events img, #events script").count() == 0
    assert dialogs == []


async def test_without_shared_worker_the_page_falls_back_to_a_stream_of_its_own(
    browser: Browser, server: ServerProcess
) -> None:
    context = await browser.new_context()
    await context.add_init_script("delete window.SharedWorker")
    try:
        pages = await open_tabs(context, server.url, 2)
        async with aiohttp.ClientSession() as session:
            assert (await health(session, server.url))["clients"] == 2
            sent = await publish(session, server.url, "direct")
        for page in pages:
            await expect(page.locator("#events li")).to_have_count(1)
            assert await shown_ids(page) == [sent]
    finally:
        await context.close()


async def test_the_page_shows_resync_after_a_server_restart(
    context: BrowserContext, server_process: ServerFactory
) -> None:
    quiet = ("--tick-interval", "3600", "--heartbeat-interval", "3600", "--retry-ms", "200")
    server = server_process(*quiet)
    (page,) = await open_tabs(context, server.url, 1)
    async with aiohttp.ClientSession() as session:
        await publish(session, server.url, "before")
    await expect(page.locator("#events li")).to_have_count(1)
    server.terminate()
    await expect(page.locator("#events li.event-shutdown")).to_have_count(1)
    # The shutdown event names no id: the page must not show the last one as its own.
    await expect(page.locator("#events li.event-shutdown .id")).to_have_text("")
    # Down until restarted: the page says so and keeps trying.
    await expect(page.locator("#state")).to_have_text("reconnecting")
    await expect(page.locator("#state-detail")).to_contain_text("next try in")
    restarted = server_process(*quiet, port=server.port)
    await expect(page.locator("#events li.event-resync")).to_have_count(1, timeout=10_000)
    await expect(page.locator("#state")).to_have_text("live")
    async with aiohttp.ClientSession() as session:
        await publish(session, restarted.url, "after")
    await expect(page.locator("#events li .data").first).to_have_text("after")


async def test_an_upload_shows_its_progress_in_every_tab(
    context: BrowserContext, server_process: ServerFactory, tmp_path: Path
) -> None:
    server = server_process("--tick-interval", "3600", "--data-dir", str(tmp_path / "data"))
    pages = await open_tabs(context, server.url, 2)
    rows = 200_000
    content = b"id,name\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(rows))
    form = pages[1].locator("#upload-form")
    await form.locator("input[type=file]").set_input_files(
        {"name": "rows.csv", "mimeType": "text/csv", "buffer": content}
    )
    await form.locator("button").click()
    await expect(pages[1].locator("#upload-result")).to_contain_text("job ")
    for page in pages:
        job = page.locator("#jobs .job")
        await expect(job).to_have_attribute("data-status", "done", timeout=30_000)
        await expect(job.locator(".job-text")).to_contain_text(f"Done: {rows} rows")
        assert await job.locator("progress").evaluate("bar => bar.value") == 100
    # A tab opened afterwards shows the finished job straight away.
    (late,) = await open_tabs(context, server.url, 1)
    await expect(late.locator("#jobs .job")).to_have_attribute("data-status", "done")
    await pages[0].screenshot(path=ARTIFACTS / "upload.png", full_page=True)


async def follow(page: Page, session: aiohttp.ClientSession, base: str, topics: str) -> None:
    """Follow `topics` from the page's form, so that no later event is missed.

    An event shown first gives the hub a Last-Event-ID: whatever is published
    while it reconnects for the new topics is replayed from there.
    """
    marker = await publish(session, base, "marker")
    await expect(page.locator(f'#events li[data-id="{marker}"]')).to_have_count(1)
    form = page.locator("#topics-form")
    await form.locator("input[name=topics]").fill(topics)
    await form.locator("button").click()


async def test_an_event_of_any_type_on_a_followed_topic_is_shown_with_its_type(
    context: BrowserContext, server: ServerProcess
) -> None:
    (page,) = await open_tabs(context, server.url, 1)
    async with aiohttp.ClientSession() as session:
        await follow(page, session, server.url, "orders")
        sent = await publish(session, server.url, "order 7 left", "orders", event="shipped")
    row = page.locator(f'#events li[data-id="{sent}"]')
    await expect(row.locator(".type")).to_have_text("shipped")
    await expect(row.locator(".data")).to_have_text("order 7 left")


async def test_a_bad_topic_stops_the_retries_until_the_topics_change(
    context: BrowserContext, server: ServerProcess
) -> None:
    """A 400 says the request is wrong: the page says why and waits for a change,
    where retrying the same request would only get the same answer."""
    (page,) = await open_tabs(context, server.url, 1)
    form = page.locator("#topics-form")
    await form.locator("input[name=topics]").fill("bad!topic")
    await form.locator("button").click()
    await expect(page.locator("#state")).to_have_text("stopped")
    detail = page.locator("#state-detail")
    await expect(detail).to_contain_text("not retrying: invalid topic 'bad!topic'")
    await expect(detail).not_to_contain_text("next try in")
    await expect(page.locator("#retry-now")).to_be_hidden()
    await form.locator("input[name=topics]").fill("orders")
    await form.locator("button").click()
    await expect(page.locator("#state")).to_have_text("live")
    async with aiohttp.ClientSession() as session:
        sent = await publish(session, server.url, "line one\nline two", "orders")
    data = page.locator(f'#events li[data-id="{sent}"] .data')
    await expect(data).to_have_text("line one\nline two")
    # A payload's own line breaks stay line breaks.
    assert await data.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"


async def test_a_job_event_type_on_another_topic_is_an_ordinary_event(
    context: BrowserContext, server: ServerProcess
) -> None:
    """`done` with data that is no job's state, published from the page's own form."""
    (page,) = await open_tabs(context, server.url, 1)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    async with aiohttp.ClientSession() as session:
        await follow(page, session, server.url, "orders")
    form = page.locator("#publish-form")
    await form.locator("input[name=topic]").fill("orders")
    await form.locator("input[name=event]").fill("done")
    await form.locator("input[name=data]").fill("order 7")
    await form.locator("button").click()
    await expect(page.locator("#publish-result")).to_contain_text("published as")
    row = page.locator("#events li").first
    await expect(row.locator(".type")).to_have_text("done")
    await expect(row.locator(".data")).to_have_text("order 7")
    assert await page.locator("#jobs .job").count() == 0
    assert errors == []


async def test_a_refused_page_says_why_and_goes_live_once_there_is_room(
    context: BrowserContext, server_process: ServerFactory
) -> None:
    """EventSource gives up for good after a 503; the page waits as told and retries."""
    server = server_process(
        "--tick-interval", "3600", "--heartbeat-interval", "3600", "--max-clients", "1"
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        holder = await session.get(f"{server.url}/events")
        assert holder.status == 200
        page = await context.new_page()
        await page.goto(server.url)
        detail = page.locator("#state-detail")
        await expect(detail).to_contain_text("limit of 1 client")
        await expect(detail).to_contain_text("(503)")
        await expect(detail).to_contain_text(re.compile(r"next try in \d+ s"))
        await expect(page.locator("#state")).to_have_text("connecting")
        holder.close()
        # Retry-After: 5, so about 5 s; generous for a loaded machine.
        await expect(page.locator("#state")).to_have_text("live", timeout=30_000)
        await expect(detail).to_have_text("")
        await publish(session, server.url, "after the wait")
    await expect(page.locator("#events li .data")).to_have_text(["after the wait"])


async def upload_and_finish(session: aiohttp.ClientSession, base: str, count: int) -> None:
    for i in range(count):
        form = aiohttp.FormData()
        form.add_field("file", b"id,name\n1,one\n", filename=f"small-{i}.csv")
        async with session.post(f"{base}/jobs", data=form) as response:
            assert response.status == 202, await response.text()

    async def all_done() -> bool:
        async with session.get(f"{base}/jobs") as response:
            jobs = (await response.json())["jobs"]
        return len(jobs) == count and all(job["status"] == "done" for job in jobs)

    await wait_for(all_done, 30, f"{count} jobs to finish")


async def test_finished_jobs_are_capped_and_can_be_cleared(
    context: BrowserContext, server_process: ServerFactory, tmp_path: Path
) -> None:
    server = server_process("--tick-interval", "3600", "--data-dir", str(tmp_path / "data"))
    async with aiohttp.ClientSession() as session:
        await upload_and_finish(session, server.url, 12)
    (page,) = await open_tabs(context, server.url, 1)
    cards = page.locator("#jobs .job")
    await expect(cards).to_have_count(10)
    await expect(cards.first.locator(".job-name")).to_have_text("small-11.csv")  # newest first
    await page.locator("#clear-jobs").click()
    await expect(cards).to_have_count(0)
    await expect(page.locator("#clear-jobs")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#jobs")).to_have_attribute("data-loaded", "true")
    assert await cards.count() == 0


async def test_the_favicon_is_served(server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/favicon.ico") as response,
    ):
        assert response.status == 200
        assert response.content_type == "image/svg+xml"
        assert (await response.text()).startswith("<svg")


# The page's parser (static/sse.js), run in Chromium on text pieces.
RUN_PAGE_PARSER = """streams => streams.map(pieces => {
  const events = [];
  let retry = null;
  const parser = new SSEParser({
    onEvent: (e) => events.push([e.type, e.data, e.id]),
    onRetry: (ms) => { retry = ms; },
  });
  pieces.forEach((piece) => parser.feed(piece));
  return { events, retry, lastId: parser.lastEventId };
})"""
PageParse = dict[str, object]


async def page_parser(context: BrowserContext) -> Page:
    page = await context.new_page()
    await page.add_script_tag(path=ROOT / "static" / "sse.js")
    return page


def reference_parse(pieces: list[str]) -> PageParse:
    """What the project's Python parser (the WHATWG steps) makes of the same stream."""
    parser = SSEParser()
    events = [e for piece in pieces for e in parser.feed(piece.encode())]
    return {
        "events": [[e.event, e.data, e.id] for e in events],
        "retry": parser.retry,
        "lastId": parser.last_id,
    }


PARSER_TABLE: list[tuple[list[str], list[list[str]]]] = [
    (["data: a\r\n\r\n"], [["message", "a", ""]]),
    (["data: a\r", "\n", "\r\n"], [["message", "a", ""]]),
    (["data: a\r\rdata: b\n\n"], [["message", "a", ""], ["message", "b", ""]]),
    (["\ufeffdata: bom\n\n"], [["message", "bom", ""]]),
    (["\ufeff", "\ufeffdata: x\n\n"], []),  # only the first BOM goes
    (["id: 7\nevent: shipped\ndata: x\ndata:y\n\n"], [["shipped", "x\ny", "7"]]),
    ([": hello\n", "retry: 5\n", "id\n", "data\n\n"], [["message", "", ""]]),
    (["data: unfinished"], []),
]


async def test_the_page_parser_reads_the_event_stream_format(context: BrowserContext) -> None:
    page = await page_parser(context)
    parsed = await page.evaluate(RUN_PAGE_PARSER, [pieces for pieces, _ in PARSER_TABLE])
    assert [p["events"] for p in parsed] == [events for _, events in PARSER_TABLE]


def random_stream(rng: random.Random) -> list[str]:
    atoms = ["data", "event", "id", "retry", ":", " ", "\r", "\n", "\r\n", "x", "12", "\x00", "é"]
    # Ends with LF: the reference holds a final CR back (a LF may follow), while
    # the page's parser ends the line at once and skips a LF that comes next.
    text = "".join(rng.choice(atoms) for _ in range(rng.randrange(60))) + "\n"
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randrange(5))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


async def test_the_page_parser_agrees_with_the_reference_parser_on_random_streams(
    context: BrowserContext,
) -> None:
    rng = random.Random(20261130)
    streams = [random_stream(rng) for _ in range(2000)]
    page = await page_parser(context)
    parsed = await page.evaluate(RUN_PAGE_PARSER, streams)
    for pieces, got in zip(streams, parsed, strict=True):
        assert got == reference_parse(pieces), pieces


PAGE_SECRET = "page-secret-" + "p" * 40


def user_token(user: int) -> str:
    claims = {"exp": int(time.time() + 600), "broadcaster": {"subscribe": [f"user.{user}.*"]}}
    return jwt.encode(claims, PAGE_SECRET, algorithm="HS256")


@pytest.fixture
def private_server(server_process: ServerFactory) -> ServerProcess:
    return server_process(
        "--tick-interval", "3600", "--heartbeat-interval", "3600", "--private-topics", "user.*",
        env={"BROADCASTER_JWT_SECRET": PAGE_SECRET},
    )  # fmt: skip


async def test_a_cookie_token_gets_its_own_private_topic_and_not_another_users(
    context: BrowserContext, private_server: ServerProcess
) -> None:
    server = private_server
    await context.add_cookies(
        [{"name": "broadcaster_token", "value": user_token(1), "url": server.url,
          "httpOnly": True, "sameSite": "Strict"}]
    )  # fmt: skip
    (page,) = await open_tabs(context, server.url, 1)
    async with aiohttp.ClientSession() as session:
        await follow(page, session, server.url, "user.1.inbox")
        await expect(page.locator("#state")).to_have_text("live")
        theirs = await publish(session, server.url, "for user 2", "user.2.inbox")
        mine = await publish(session, server.url, "for user 1", "user.1.inbox")
        await expect(page.locator(f'#events li[data-id="{mine}"] .data')).to_have_text("for user 1")
        assert theirs not in await shown_ids(page)
    form = page.locator("#topics-form")
    await form.locator("input[name=topics]").fill("user.2.inbox")
    await form.locator("button").click()
    await expect(page.locator("#state-detail")).to_contain_text(
        "the token does not allow subscribing to 'user.2.inbox' (403)"
    )


async def test_a_page_given_a_token_in_its_url_sends_it_and_drops_it_from_the_url(
    context: BrowserContext, private_server: ServerProcess
) -> None:
    server = private_server
    page = await context.new_page()
    await page.goto(f"{server.url}/?access_token={user_token(3)}")
    await expect(page.locator("#state")).to_have_text("live", timeout=10_000)
    assert "access_token" not in page.url
    async with aiohttp.ClientSession() as session:
        await follow(page, session, server.url, "user.3.inbox")
        await expect(page.locator("#state")).to_have_text("live")
        mine = await publish(session, server.url, "for user 3", "user.3.inbox")
    await expect(page.locator(f'#events li[data-id="{mine}"] .data')).to_have_text("for user 3")


async def test_a_private_job_shows_in_the_uploaders_tab_only(
    context: BrowserContext, server_process: ServerFactory, tmp_path: Path
) -> None:
    server = server_process(
        "--tick-interval", "3600", "--heartbeat-interval", "3600", "--data-dir",
        str(tmp_path / "data"), "--private-topics", "job.*",
        env={"BROADCASTER_JWT_SECRET": PAGE_SECRET},
    )  # fmt: skip
    other, uploader = await open_tabs(context, server.url, 2)
    # Separate pages, separate people: the other has a context of its own.
    stranger = await context.browser.new_context()  # type: ignore[union-attr]
    (theirs,) = await open_tabs(stranger, server.url, 1)
    form = uploader.locator("#upload-form")
    await form.locator("input[type=file]").set_input_files(
        {"name": "salaries.csv", "mimeType": "text/csv", "buffer": b"id,pay\n1,100\n"}
    )
    await form.locator("button").click()
    job = uploader.locator("#jobs .job")
    await expect(job).to_have_attribute("data-status", "done", timeout=30_000)
    await expect(job.locator(".job-name")).to_have_text("salaries.csv")
    async with aiohttp.ClientSession() as session:
        marker = await publish(session, server.url, "after the job")
    await expect(theirs.locator(f'#events li[data-id="{marker}"]')).to_have_count(1)
    assert await theirs.locator("#jobs .job").count() == 0
    await expect(theirs.locator("#state")).to_have_text("live")
    await expect(other.locator("#state")).to_have_text("live")
    await stranger.close()
