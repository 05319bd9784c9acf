"""The rule: which topics need a token, and whether a request's token covers them."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from broadcaster.auth.carriers import DEFAULT_COOKIE, QUERY_PARAMETER
from broadcaster.auth.patterns import Patterns
from broadcaster.auth.tokens import REASONS, Grant, Refusal, Verifier

PRIVATE_LABEL = "(private)"  # parentheses are not allowed in topic names


class Policy:
    """Private topics and the verifier for their tokens. With no private topics,
    every check is one falsy test and nothing is verified."""

    def __init__(
        self,
        private: Iterable[str] = (),
        verifier: Verifier | None = None,
        cookie_name: str = DEFAULT_COOKIE,
    ) -> None:
        self.private = Patterns.parse(private)
        self.verifier = verifier
        self.cookie_name = cookie_name
        # Refusals by reason, read by the metrics at scrape time.
        self.refusals = dict.fromkeys(REASONS, 0)

    def shown_as(self, topic: str) -> str:
        """How `topic` may be named where anyone can read it (/healthz, /metrics):
        a private topic's name can itself be private (`user.42.inbox`)."""
        return PRIVATE_LABEL if self.private and self.private.covers(topic) else topic

    def needs_token(self, topics: Iterable[str]) -> list[str]:
        """The private topics among `topics`, in order."""
        if not self.private:
            return []
        return [topic for topic in sorted(topics) if self.private.covers(topic)]

    def subscribe(self, topics: Collection[str], token: str | None) -> float | None:
        """Allow following `topics`, or raise `Refusal`. Returns when the token
        expires, when a token was needed; None otherwise."""
        private = self.needs_token(topics)
        if not private:
            return None
        grant = self.verify(token, f"topic {private[0]!r} is private")
        for topic in private:
            if not grant.subscribe.covers(topic):
                raise Refusal(
                    403, "not_covered", f"the token does not allow subscribing to {topic!r}"
                )
        return grant.expires

    def publish(self, topic: str, token: str | None) -> None:
        """Allow publishing to `topic` with `token`, or raise `Refusal`."""
        grant = self.verify(token, "publishing needs a token")
        if not grant.publish.covers(topic):
            raise Refusal(403, "not_covered", f"the token does not allow publishing to {topic!r}")

    def verify(self, token: str | None, why: str) -> Grant:
        if token is None:
            raise Refusal(
                401, "missing",
                f"{why}: send a token as Authorization: Bearer, the {self.cookie_name!r}"
                f" cookie, or the {QUERY_PARAMETER!r} query parameter",
            )  # fmt: skip
        if self.verifier is None:
            raise Refusal(401, "bad_signature", "this server has no key to verify tokens with")
        return self.verifier.verify(token)

    def count(self, refusal: Refusal) -> None:
        self.refusals[refusal.reason] += 1
