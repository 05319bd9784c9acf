"""The `Backend` protocol: what the broker needs from an event store."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from broadcaster.wire.events import Event, EventId, Mercure

Deliver = Callable[[Sequence[Event]], None]
"""Called with every event the store has at hand, oldest first: events handed
over together (one publish of a batch) are fanned out together."""

Draft = tuple[str, str, str | None]
"""An event before the store gives it an id: topic, data, type."""

StoreDraft = tuple[str, str, str | None, Mercure | None]
"""A `Draft` as the store keeps it, with what a Mercure update carries besides
(None for a native event)."""


@dataclass(frozen=True, slots=True)
class Replay:
    """What a reconnecting client missed.

    `complete` is False when the history cannot prove there is no gap (the id is
    unknown, from another run, or older than the history); the client must then
    resync. `newest` is the newest id the backend had when it answered.
    """

    events: list[Event]
    complete: bool
    newest: EventId | None


class BackendUnavailable(RuntimeError):
    """The store cannot take events right now; publishing should answer 503."""


class Backend(Protocol):
    name: str

    async def start(self, deliver: Deliver) -> None:
        """Begin feeding every event, in id order, to `deliver`."""

    async def publish(
        self, topic: str, data: str, type: str | None = None, mercure: Mercure | None = None
    ) -> Event:
        """Store an event, give it the next id, and return it."""

    async def since(self, last: EventId | None, topics: Collection[str] | None) -> Replay:
        """Events of `topics` (None: every topic) after `last` (None: the whole
        history, which is then complete by definition), oldest first."""

    async def find(self, custom_id: str) -> EventId | None:
        """The id of the oldest event in the history published with `custom_id`."""

    async def publish_many(self, drafts: Sequence[StoreDraft]) -> list[Event]:
        """Store several events at once, with consecutive ids, in one round trip
        to the store; all or none of them."""

    def healthy(self) -> bool:
        """Whether the store is reachable now."""

    def leads_ticker(self) -> bool:
        """Whether this instance's ticker should publish (one instance does)."""

    async def aclose(self) -> None:
        """Stop feeding events and release connections."""
