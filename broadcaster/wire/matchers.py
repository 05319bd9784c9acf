"""Mercure's topic matchers: `exact` and `urlpattern`, and the `*` wildcard.

Mercure topics are arbitrary strings (usually URLs), not the native topic names
of `topics.py`. A URL pattern is compiled when it is parsed, and the compiled
object travels with its matcher (the router keeps one per live pattern), so
no event ever compiles one; `urlpattern` is the WHATWG URL Pattern standard in Rust; its regular
expressions run on Rust's `regex`, which matches in linear time, so a crafted
pattern cannot backtrack catastrophically.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from urlpattern import URLPattern

EXACT, URLPATTERN = "exact", "urlpattern"
KINDS = (EXACT, URLPATTERN)
WILDCARD = "*"
BASE = "https://hub.invalid/.well-known/mercure"
"""What relative patterns and topics resolve against. The spec says the hub's
URL; one fixed base makes a pattern mean the same whatever host a request
named, and relative topics still match relative patterns."""
MAX_LENGTH = 1024


class InvalidMatcher(ValueError):
    pass


def check_text(value: str, what: str, max_length: int = MAX_LENGTH) -> str:
    """`value` if Mercure allows it as a topic, matcher or id, else `InvalidMatcher`:
    no control characters (C0, DEL, C1) nor format characters (Cf)."""
    if not value:
        raise InvalidMatcher(f"{what} is empty")
    if len(value) > max_length:
        raise InvalidMatcher(f"{what} is longer than {max_length} characters")
    for char in value:
        if char < " " or "\x7f" <= char <= "\x9f" or unicodedata.category(char) == "Cf":
            raise InvalidMatcher(
                f"{what} {value[:80]!r} contains the control or format character U+{ord(char):04X}"
            )
    return value


@dataclass(frozen=True, slots=True)
class Matcher:
    kind: str
    value: str
    pattern: URLPattern | None = field(default=None, compare=False, repr=False)
    """The compiled URL pattern (None for exact matchers and the wildcard)."""

    @classmethod
    def parse(cls, kind: str, value: str) -> Matcher:
        if kind not in KINDS:
            raise InvalidMatcher(
                f"unknown matcher type {kind[:40]!r}: expected exact or urlpattern"
            )
        check_text(value, f"{kind} matcher")
        if kind == URLPATTERN and value != WILDCARD:
            return cls(kind, value, compile_pattern(value))
        return cls(kind, value)

    def matches(self, topic: str) -> bool:
        if self.value == WILDCARD:
            return True
        if self.kind == EXACT:
            return topic == self.value
        return self.pattern is not None and url_matches(self.pattern, topic)


def compile_pattern(pattern: str) -> URLPattern:
    try:
        return URLPattern(pattern, BASE)
    except ValueError as error:
        raise InvalidMatcher(f"invalid URL pattern {pattern[:80]!r}: {error}") from None


def url_matches(pattern: URLPattern, topic: str) -> bool:
    """Whether `topic` matches; a topic that is no URL matches no pattern."""
    try:
        return bool(pattern.test(topic, BASE))
    except ValueError:
        return False
