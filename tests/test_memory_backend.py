from __future__ import annotations

from broadcaster.fanout.stores.memory import MemoryBackend
from broadcaster.wire.events import Event, EventId

EPOCH = 1000


async def filled(history: int, topics: list[str]) -> tuple[MemoryBackend, list[Event]]:
    backend = MemoryBackend(history, epoch=EPOCH)
    return backend, [await backend.publish(topic, f"m{i}") for i, topic in enumerate(topics)]


async def test_ids_count_up_from_the_epoch() -> None:
    _, events = await filled(10, ["a", "b", "a"])
    assert [e.id for e in events] == [EventId(EPOCH, 1), EventId(EPOCH, 2), EventId(EPOCH, 3)]


async def test_since_returns_missed_events_of_the_topics() -> None:
    backend, events = await filled(10, ["a", "b", "a", "b"])
    replay = await backend.since(events[0].id, {"a"})
    assert replay.complete
    assert replay.events == [events[2]]
    assert replay.newest == events[3].id


async def test_since_the_newest_is_complete_and_empty() -> None:
    backend, events = await filled(10, ["a", "a"])
    replay = await backend.since(events[-1].id, {"a"})
    assert (replay.complete, replay.events) == (True, [])


async def test_since_just_before_the_ring_is_still_complete() -> None:
    backend, events = await filled(3, ["a"] * 5)  # ring holds seq 3, 4, 5
    replay = await backend.since(events[1].id, {"a"})
    assert replay.complete
    assert replay.events == events[2:]


async def test_older_than_history_unknown_and_foreign_ids_resync() -> None:
    backend, events = await filled(3, ["a"] * 5)
    for last in (events[0].id, EventId(EPOCH, 6), EventId(EPOCH - 1, 5), EventId(EPOCH + 1, 1)):
        replay = await backend.since(last, {"a"})
        assert not replay.complete, last
        assert replay.newest == events[-1].id


async def test_zero_history_only_accepts_the_newest() -> None:
    backend, events = await filled(0, ["a", "a"])
    assert (await backend.since(events[1].id, {"a"})).complete
    assert not (await backend.since(events[0].id, {"a"})).complete


async def test_publish_delivers_synchronously_once_started() -> None:
    backend = MemoryBackend(5, epoch=EPOCH)
    seen: list[Event] = []
    await backend.start(seen.extend)
    event = await backend.publish("a", "x", "t")
    assert seen == [event]
    await backend.aclose()
    await backend.publish("a", "y")
    assert seen == [event]
