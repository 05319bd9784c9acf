"""Which Mercure subscribers an event reaches: the broker's tap for them.

A Mercure subscriber follows matchers, not native topic names, so it sits in
the broker with no topic of its own and this router picks it per event. Exact
matchers are looked up by topic; each distinct URL pattern is evaluated once
per event (compiled once, in `wire/matchers.py`), whoever follows it. A private
event then goes only to followers whose token may read one of its topics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

from broadcaster.fanout.broker import Subscription
from broadcaster.wire.events import Event, Frame
from broadcaster.wire.matchers import EXACT, WILDCARD, Matcher, url_matches

Reader = Callable[[str], bool]
"""Whether a subscriber's token may read a topic (its subscribe grant)."""


@dataclass(eq=False, slots=True)
class Follower:
    """One Mercure subscriber: its broker subscription, matchers, and reader
    (None when it sent no token: it reads public updates only)."""

    sub: Subscription
    matchers: tuple[Matcher, ...]
    may_read: Reader | None


class Router:
    def __init__(self, private_topic: Reader) -> None:
        """`private_topic`: the native rule (`--private-topics`); an event on
        such a topic is private to Mercure subscribers too."""
        self._private_topic = private_topic
        self._exact: dict[str, set[Follower]] = {}
        self._patterns: dict[str, set[Follower]] = {}
        self._everything: set[Follower] = set()

    def add(self, follower: Follower) -> None:
        for matcher in follower.matchers:
            self._place(matcher).add(follower)

    def remove(self, follower: Follower) -> None:
        for matcher in follower.matchers:
            followers = self._place(matcher)
            followers.discard(follower)
            if not followers and followers is not self._everything:
                index = self._exact if matcher.kind == EXACT else self._patterns
                del index[matcher.value]

    def _place(self, matcher: Matcher) -> set[Follower]:
        if matcher.value == WILDCARD:
            return self._everything
        index = self._exact if matcher.kind == EXACT else self._patterns
        return index.setdefault(matcher.value, set())

    def tap(self, events: list[Event]) -> list[tuple[Frame, list[Subscription]]]:
        """The broker's tap. Consecutive events with the same topics and privacy
        go to the same subscribers: they are picked once and sent as one frame,
        one write per subscriber, as the broker does for native streams."""
        if not (self._exact or self._patterns or self._everything):
            return []
        groups: list[tuple[Frame, list[Subscription]]] = []
        for (topics, private), run in groupby(events, self._key):
            frames = [event.frame for event in run]
            frame = frames[0] if len(frames) == 1 else Frame.joined(frames)
            groups.append((frame, self.pick(topics, private)))
        return groups

    def _key(self, event: Event) -> tuple[tuple[str, ...], bool]:
        topics = self.topics(event)
        return topics, self.is_private(event, topics)

    def pick(self, topics: tuple[str, ...], private: bool) -> list[Subscription]:
        """The subscriptions an update of `topics` goes to."""
        found = set(self._everything)
        for topic in topics:
            found.update(self._exact.get(topic, ()))
        for pattern, followers in self._patterns.items():
            if any(url_matches(pattern, topic) for topic in topics):
                found.update(followers)
        if private:
            found = {f for f in found if may_read(f, topics)}
        return [f.sub for f in found if not f.sub.evicted]

    def wants(self, follower: Follower, event: Event) -> bool:
        """Whether `follower` gets `event`: for a replay, which is rare enough
        to test each matcher of one follower."""
        topics = self.topics(event)
        if not any(m.matches(t) for m in follower.matchers for t in topics):
            return False
        return not self.is_private(event, topics) or may_read(follower, topics)

    @staticmethod
    def topics(event: Event) -> tuple[str, ...]:
        """A Mercure update's canonical and alternate topics; a native event's one."""
        return (event.topic,) if event.mercure is None else event.mercure.topics

    def is_private(self, event: Event, topics: tuple[str, ...]) -> bool:
        if event.mercure is not None and event.mercure.private:
            return True
        return any(self._private_topic(topic) for topic in topics)


def may_read(follower: Follower, topics: tuple[str, ...]) -> bool:
    reader = follower.may_read
    return reader is not None and any(reader(topic) for topic in topics)
