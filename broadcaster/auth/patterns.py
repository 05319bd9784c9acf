"""Topic patterns: an exact topic name, or a prefix ending in `*` (`user.42.*`).

The grammar: a pattern is a topic name (see `broadcaster.wire.topics`), optionally
followed by a single trailing `*` that stands for any rest, empty included; a
lone `*` covers every topic. `*` anywhere else is an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broadcaster.wire.matchers import EXACT, Matcher
from broadcaster.wire.matchers import WILDCARD as MATCH_ALL
from broadcaster.wire.topics import InvalidTopic, check_topic

WILDCARD = "*"
MAX_PATTERN_LENGTH = 1024


class InvalidPattern(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Patterns:
    """A set of patterns; `covers(topic)` when any of them matches it."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    matchers: tuple[Matcher, ...] = ()
    """Mercure's URL patterns, from a token's Mercure grants."""

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> Patterns:
        exact: set[str] = set()
        prefixes: set[str] = set()
        for pattern in patterns:
            prefix, starred = _split(pattern)
            (prefixes if starred else exact).add(prefix)
        return cls(frozenset(exact), tuple(sorted(prefixes)))

    @classmethod
    def of_matchers(cls, matchers: Iterable[Matcher]) -> Patterns:
        """Mercure's matchers: exact topics join the set, `*` covers everything."""
        exact: set[str] = set()
        prefixes: set[str] = set()
        patterns: list[Matcher] = []
        for matcher in matchers:
            if matcher.value == MATCH_ALL:
                prefixes.add("")
            elif matcher.kind == EXACT:
                exact.add(matcher.value)
            elif matcher not in patterns:
                patterns.append(matcher)
        return cls(frozenset(exact), tuple(sorted(prefixes)), tuple(patterns))

    def __or__(self, other: Patterns) -> Patterns:
        if not other:
            return self
        if not self:
            return other
        return Patterns(
            self.exact | other.exact,
            tuple(sorted({*self.prefixes, *other.prefixes})),
            tuple(dict.fromkeys((*self.matchers, *other.matchers))),
        )

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes or self.matchers)

    def covers(self, topic: str) -> bool:
        return (
            topic in self.exact
            or topic.startswith(self.prefixes)
            or any(matcher.matches(topic) for matcher in self.matchers)
        )


def _split(pattern: object) -> tuple[str, bool]:
    if not isinstance(pattern, str):
        raise InvalidPattern(f"a topic pattern is a string, not {type(pattern).__name__}")
    starred = pattern.endswith(WILDCARD)
    prefix = pattern[:-1] if starred else pattern
    try:
        if prefix:
            check_topic(prefix, MAX_PATTERN_LENGTH)
        elif not starred:
            raise InvalidTopic("empty")
    except InvalidTopic:
        raise InvalidPattern(
            f"invalid topic pattern {pattern[:80]!r}: a pattern is a topic name, "
            f"optionally ending in a single '*'"
        ) from None
    return prefix, starred
