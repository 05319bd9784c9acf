"""Topic names: the rule, and the check that turns a bad name into a clear error."""

from __future__ import annotations

import re

DEFAULT_MAX_LENGTH = 64
DEFAULT_TOPIC = "time"
"""What a stream follows when it names no topic: the ticker's."""
_CHARACTERS = re.compile(r"[A-Za-z0-9_.:-]+")


def topic_rule(max_length: int = DEFAULT_MAX_LENGTH) -> str:
    return f"1 to {max_length} characters from A-Z, a-z, 0-9, '_', '-', '.' and ':'"


class InvalidTopic(ValueError):
    pass


def check_topic(name: str, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Return `name` if it follows the rule, else raise `InvalidTopic` saying why."""
    if len(name) > max_length or not _CHARACTERS.fullmatch(name):
        raise InvalidTopic(f"invalid topic {name[:80]!r}: a topic is {topic_rule(max_length)}")
    return name
