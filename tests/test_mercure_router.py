"""The Mercure router: each distinct URL pattern is evaluated once per event,
however many subscribers follow it; private updates by grant."""

from __future__ import annotations

import pytest
from urlpattern import URLPattern

from broadcaster.fanout import mercure_router
from broadcaster.fanout.broker import Broker
from broadcaster.fanout.mercure_router import Follower, Router
from broadcaster.fanout.stores.memory import MemoryBackend
from broadcaster.wire import matchers
from broadcaster.wire.events import Event, EventId, Mercure
from broadcaster.wire.matchers import EXACT, URLPATTERN, Matcher


def follower(broker: Broker, *matchers: Matcher, reads: str | None = None) -> Follower:
    reader = None if reads is None else (lambda topic: topic == reads)
    return Follower(broker.subscribe(()), matchers, reader)


def update(*topics: str, private: bool = False) -> Event:
    return Event(topics[0], EventId(1, 1), "data", None, Mercure(topics, private))


def test_each_distinct_pattern_is_evaluated_once_per_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = Broker(MemoryBackend(10), queue_size=8)
    router = Router(lambda topic: False)
    shared = Matcher.parse(URLPATTERN, "https://example.com/books/:id")
    for _ in range(100):
        router.add(follower(broker, shared))
    for n in range(100):
        router.add(follower(broker, Matcher.parse(URLPATTERN, f"https://example.com/{n}/:id")))
    calls: list[int] = []
    real = matchers.url_matches

    def counting(pattern: URLPattern, topic: str) -> bool:
        calls.append(id(pattern))
        return real(pattern, topic)

    monkeypatch.setattr(mercure_router, "url_matches", counting)
    event = update("https://example.com/books/1")
    [(frame, picked)] = router.tap([event, event, event])
    assert len(picked) == 100
    assert len(calls) == 101 == len(set(calls))
    assert bytes(frame.payload) == bytes(event.frame.payload) * 3


def test_a_private_update_goes_to_readers_of_any_of_its_topics() -> None:
    broker = Broker(MemoryBackend(10), queue_size=8)
    router = Router(lambda topic: False)
    everything = Matcher.parse(EXACT, "*")
    anonymous = follower(broker, everything)
    reader = follower(broker, everything, reads="https://example.com/users/42/books/1")
    other = follower(broker, everything, reads="https://example.com/users/7/books/1")
    for each in (anonymous, reader, other):
        router.add(each)
    event = update(
        "https://example.com/books/1", "https://example.com/users/42/books/1", private=True
    )
    [(_, picked)] = router.tap([event])
    assert picked == [reader.sub]
    assert [router.wants(f, event) for f in (anonymous, reader, other)] == [False, True, False]
    router.remove(reader)
    assert router.tap([event]) == [(event.frame, [])]


def counting_compilations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    compiled: list[str] = []

    def compile_counted(pattern: str, base: str) -> URLPattern:
        compiled.append(pattern)
        return URLPattern(pattern, base)

    monkeypatch.setattr(matchers, "URLPattern", compile_counted)
    return compiled


def test_a_pattern_is_compiled_once_however_many_events_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # More distinct patterns than the old cache of compiled ones held (4096),
    # which made every event recompile every pattern.
    many = 4100
    monkeypatch.setattr(mercure_router, "MAX_PATTERNS", many, raising=False)
    compiled = counting_compilations(monkeypatch)
    broker = Broker(MemoryBackend(10), queue_size=8)
    router = Router(lambda topic: False)
    for n in range(many):
        router.add(follower(broker, Matcher.parse(URLPATTERN, f"https://example.com/{n}/:id")))
    assert len(compiled) == many  # once each, as it was parsed
    events = [update(f"https://example.com/{n}/1") for n in range(3)]
    for _ in range(2):
        assert [len(picked) for _, picked in router.tap(events)] == [1, 1, 1]
    assert len(compiled) == many, "events compiled patterns"


def test_distinct_live_patterns_are_capped_and_freed_with_their_last_follower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mercure_router, "MAX_PATTERNS", 2, raising=False)
    broker = Broker(MemoryBackend(10), queue_size=8)
    router = Router(lambda topic: False)
    a, b, c = (Matcher.parse(URLPATTERN, f"https://example.com/{n}/:id") for n in "abc")
    first, second = follower(broker, a, b), follower(broker, a)
    router.add(first)
    router.add(second)  # a pattern already live costs nothing
    with pytest.raises(mercure_router.TooManyPatterns, match="at most 2"):
        router.add(follower(broker, c))
    router.remove(first)
    router.add(follower(broker, c))  # b left with its last follower; a stays
    [(_, picked)] = router.tap([update("https://example.com/a/1")])
    assert picked == [second.sub]
