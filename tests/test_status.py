"""/healthz and /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from broadcaster.app import create_app
from broadcaster.fanout.broker import MAX_COUNTED_TOPICS, OTHER_TOPICS
from broadcaster.ops.config import Settings
from broadcaster.web.keys import BROKER
from tests.conftest import Stream, open_stream

QUIET = Settings(tick_interval=3600, heartbeat_interval=3600, history=2, queue_size=4)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def published_by_topic(metrics: Samples) -> dict[str, float]:
    return {
        labels[0][1]: value
        for (name, labels), value in metrics.items()
        if name == "broadcaster_events_published_total"
    }


async def test_healthz_reports_clients_topics_and_backend(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(QUIET))
    async with (
        open_stream(client.session, str(client.make_url("/events?topic=a&topic=b"))),
        client.get("/healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body == {
        "status": "ok",
        "clients": 1,
        "topics": {"a": 1, "b": 1},
        "backend": {"name": "memory", "status": "up"},
    }


async def test_metrics_count_what_happened(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(QUIET))
    broker = client.app[BROKER]
    async with open_stream(client.session, str(client.make_url("/events?topic=a"))) as stream:
        first = await broker.publish("a", "1")
        await stream.events(1)
        await broker.publish("b", "2")
        replayed = Stream(
            await client.get("/events?topic=a", headers={"Last-Event-ID": str(first.id)})
        )
        resynced = Stream(await client.get("/events?topic=a", headers={"Last-Event-ID": "1-1"}))
        await resynced.events(1)
        # A subscriber that never drains: its queue of 4 overflows on the fifth event.
        with broker.subscribe({"slow"}):
            for i in range(5):
                await broker.publish("slow", str(i))
                broker.flush()  # one event per loop iteration, none joined
        async with client.get("/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            metrics = samples(await response.text())
        replayed.response.close()
        resynced.response.close()
    assert metrics[("broadcaster_clients", ())] == 3
    assert metrics[("broadcaster_events_published_total", (("topic", "a"),))] == 1
    assert metrics[("broadcaster_events_published_total", (("topic", "b"),))] == 1
    assert metrics[("broadcaster_replays_total", ())] == 1
    assert metrics[("broadcaster_resyncs_total", ())] == 1
    assert metrics[("broadcaster_events_published_total", (("topic", "slow"),))] == 5
    assert metrics[("broadcaster_evictions_total", ())] == 1
    assert metrics[("broadcaster_deliveries_total", ())] == 1 + 4
    assert metrics[("broadcaster_fanout_seconds_count", ())] == 7


async def test_topics_past_the_counted_ones_share_one_label(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(QUIET))
    broker = client.app[BROKER]
    for n in range(MAX_COUNTED_TOPICS + 5):
        await broker.publish(f"topic-{n}", "x")
    await broker.publish("topic-0", "again")
    async with client.get("/metrics") as response:
        metrics = samples(await response.text())
    published = published_by_topic(metrics)
    assert len(published) == MAX_COUNTED_TOPICS + 1
    assert published["topic-0"] == 2
    assert published[OTHER_TOPICS] == 5


async def test_job_topics_neither_grow_the_metrics_nor_use_up_the_cap(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(QUIET))
    broker = client.app[BROKER]
    for n in range(MAX_COUNTED_TOPICS + 5):
        await broker.publish(f"job.{n:016x}", "x")
    await broker.publish("orders", "after a thousand jobs")
    async with client.get("/metrics") as response:
        metrics = samples(await response.text())
    published = published_by_topic(metrics)
    assert published == {"job.*": MAX_COUNTED_TOPICS + 5, "orders": 1}
