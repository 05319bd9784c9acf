"""Topic names: the rule, and the check that turns a bad name into a clear error."""

from __future__ import annotations

import re

MAX_TOPIC_LENGTH = 64
TOPIC_RULE = f"1 to {MAX_TOPIC_LENGTH} characters from A-Z, a-z, 0-9, '_', '-', '.' and ':'"
_TOPIC = re.compile(rf"[A-Za-z0-9_.:-]{{1,{MAX_TOPIC_LENGTH}}}")


class InvalidTopic(ValueError):
    pass


def check_topic(name: str) -> str:
    """Return `name` if it follows `TOPIC_RULE`, else raise `InvalidTopic` saying why."""
    if not _TOPIC.fullmatch(name):
        raise InvalidTopic(f"invalid topic {name[:80]!r}: a topic is {TOPIC_RULE}")
    return name
