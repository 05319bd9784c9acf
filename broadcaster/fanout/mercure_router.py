"""Which Mercure subscribers an event reaches: the broker's tap for them.

A Mercure subscriber follows matchers, not native topic names, so it sits in
the broker with no topic of its own and this router picks it per event. Exact
matchers are looked up by topic; each distinct URL pattern is evaluated once
per event, whoever follows it, with the object compiled when its first follower
came (kept while anyone follows it). Distinct live patterns are capped, since
each costs every event a test. A private event then goes only to followers
whose token may read one of its topics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby

from urlpattern import URLPattern

from broadcaster.fanout.broker import Subscription
from broadcaster.wire.events import Event, Frame
from broadcaster.wire.matchers import EXACT, WILDCARD, Matcher, url_matches

Reader = Callable[[str], bool]
"""Whether a subscriber's token may read a topic (its subscribe grant)."""
MAX_PATTERNS = 1000
"""Distinct URL patterns followed at once; every event is tested against each."""


class TooManyPatterns(Exception):
    pass


@dataclass(eq=False, slots=True)
class Follower:
    """One Mercure subscriber: its broker subscription, matchers, and reader
    (None when it sent no token: it reads public updates only)."""

    sub: Subscription
    matchers: tuple[Matcher, ...]
    may_read: Reader | None


@dataclass(eq=False, slots=True)
class Pattern:
    """A live URL pattern: compiled once, and who follows it (its refcount)."""

    compiled: URLPattern
    followers: set[Follower] = field(default_factory=set)


class Router:
    def __init__(self, private_topic: Reader) -> None:
        """`private_topic`: the native rule (`--private-topics`); an event on
        such a topic is private to Mercure subscribers too."""
        self._private_topic = private_topic
        self._exact: dict[str, set[Follower]] = {}
        self._patterns: dict[str, Pattern] = {}
        self._everything: set[Follower] = set()

    def add(self, follower: Follower) -> None:
        """Adds all of `follower`'s matchers, or none: `TooManyPatterns` when
        its new URL patterns would take the live ones past `MAX_PATTERNS`."""
        new = {m.value for m in follower.matchers if m.pattern is not None} - self._patterns.keys()
        if new and len(self._patterns) + len(new) > MAX_PATTERNS:
            raise TooManyPatterns(
                f"the hub follows {len(self._patterns)} distinct URL patterns,"
                f" at most {MAX_PATTERNS}"
            )
        for matcher in follower.matchers:
            if matcher.pattern is not None:
                entry = self._patterns.setdefault(matcher.value, Pattern(matcher.pattern))
                entry.followers.add(follower)
            elif matcher.value == WILDCARD:
                self._everything.add(follower)
            else:
                self._exact.setdefault(matcher.value, set()).add(follower)

    def remove(self, follower: Follower) -> None:
        for matcher in follower.matchers:
            if matcher.value == WILDCARD:
                self._everything.discard(follower)
                continue
            index = self._exact if matcher.kind == EXACT else self._patterns
            place = index.get(matcher.value)
            if place is None:
                continue
            followers = place.followers if isinstance(place, Pattern) else place
            followers.discard(follower)
            if not followers:
                del index[matcher.value]

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
        for entry in self._patterns.values():
            if any(url_matches(entry.compiled, topic) for topic in topics):
                found.update(entry.followers)
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
