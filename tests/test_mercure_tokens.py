"""Mercure's grants in a token, read into the one `Grant` model (auth/tokens.py)."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster.auth.tokens import MERCURE_DETAIL, Refusal, grant

BOOK = "https://example.com/books/1"
BOOKS = {"match": "https://example.com/books/:id", "match_type": "urlpattern"}
REGEX = {"match": BOOK, "match_type": "regex"}


def claims(*details: Any, **extra: Any) -> dict[str, Any]:
    return {"exp": 4_000_000_000, "authorization_details": list(details), **extra}


def detail(actions: Any, topics: Any, type: str = MERCURE_DETAIL) -> dict[str, Any]:
    return {"type": type, "actions": actions, "topics": topics}


def test_details_grant_by_action_and_matcher_type() -> None:
    given = grant(
        claims(
            detail(["subscribe", "some-future-action"], [BOOKS]),
            detail(["publish"], [{"match": BOOK}]),
            {"type": "https://other.example/api", "whatever": True},
        )
    )  # fmt: skip
    assert given.subscribe.covers(BOOK)
    assert not given.subscribe.covers("https://example.com/books/1/reviews")
    assert given.publish.covers(BOOK)
    assert not given.publish.covers("https://example.com/books/2")


def test_the_wildcard_and_the_legacy_claim() -> None:
    given = grant(
        claims(
            detail(["subscribe"], [{"match": "*", "match_type": "urlpattern"}]),
            mercure={"publish": [BOOK], "subscribe": []},
        )
    )
    assert given.subscribe.covers("anything at all")
    assert given.publish.covers(BOOK)
    assert not given.publish.covers("https://example.com/books/2")


@pytest.mark.parametrize(
    "bad",
    [
        claims(detail(["publish"], [{"match": BOOK}]), detail(["publish"], [REGEX])),
        claims(detail(["publish"], [])),
        claims(detail([], [{"match": BOOK}])),
        claims(detail(["publish", 7], [{"match": BOOK}])),
        claims(detail(["publish"], [BOOK])),
        claims(detail(["subscribe"], [{"match": "/books/(", "match_type": "urlpattern"}])),
        claims(detail(["subscribe"], [{"match": "t\u200b"}])),
        {"exp": 4_000_000_000, "authorization_details": {"type": MERCURE_DETAIL}},
        {"exp": 4_000_000_000, "mercure": {"publish": "*"}},
    ],
)  # fmt: skip
def test_a_malformed_mercure_grant_refuses_the_whole_token(bad: dict[str, Any]) -> None:
    with pytest.raises(Refusal) as refused:
        grant(bad)
    assert (refused.value.status, refused.value.reason) == (401, "bad_claim")
