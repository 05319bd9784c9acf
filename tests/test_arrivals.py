"""By when each request on a connection had come (broadcaster/edge/arrivals.py).

Times here are plain numbers: what matters is which note dates which request."""

from __future__ import annotations

from broadcaster.edge.arrivals import Arrivals


def test_requests_read_together_are_dated_by_when_each_came() -> None:
    arrivals = Arrivals()
    arrivals.read(100, 0, now=1.0)  # one request of 100 bytes, read at once
    arrivals.saw(50, now=2.0)  # paused: a second one waits unread
    arrivals.saw(80, now=3.0)  # a third, 30 bytes, comes later
    arrivals.read(80, 0, now=9.0)  # both read when reading resumes
    assert [arrivals.date(size, now=9.0) for size in (100, 50, 30)] == [1.0, 2.0, 3.0]


def test_a_request_whose_body_is_still_coming_is_dated_by_the_last_read() -> None:
    arrivals = Arrivals()
    arrivals.read(1_000, 0, now=1.0)  # a head and the start of a 10,000-byte body
    assert arrivals.date(10_000, now=1.0) == 1.0
    arrivals.caught_up()
    arrivals.read(9_000, 0, now=5.0)  # the rest of the body
    arrivals.caught_up()
    arrivals.read(100, 0, now=7.0)  # the next request
    assert arrivals.date(100, now=7.0) == 7.0


def test_the_body_counts_even_when_nothing_catches_up_in_between() -> None:
    arrivals = Arrivals()
    arrivals.read(1_000, 0, now=1.0)
    assert arrivals.date(10_000, now=1.0) == 1.0
    arrivals.read(9_000, 0, now=5.0)
    arrivals.read(100, 0, now=7.0)
    assert arrivals.date(100, now=7.0) == 7.0


def test_after_a_size_it_cannot_tell_it_dates_by_the_last_read_until_caught_up() -> None:
    arrivals = Arrivals()
    arrivals.read(500, 0, now=1.0)  # a chunked request's head and first chunk
    assert arrivals.date(None, now=1.0) == 1.0
    arrivals.read(5_000, 0, now=4.0)  # more chunks, and a request behind them
    assert arrivals.date(100, now=4.0) == 4.0  # not 1.0: its bytes may have come last
    arrivals.caught_up()
    arrivals.read(100, 50, now=6.0)
    arrivals.read(50, 0, now=8.0)
    assert [arrivals.date(100, now=8.0), arrivals.date(50, now=8.0)] == [6.0, 6.0]


def test_catching_up_forgets_what_it_no_longer_needs() -> None:
    arrivals = Arrivals()
    for second in range(1_000):  # a long upload, read in pieces, nothing dated
        arrivals.read(65_536, 0, now=float(second))
        arrivals.caught_up()
    assert arrivals.notes == 1
    arrivals.read(100, 0, now=2_000.0)
    assert arrivals.date(100, now=2_000.0) == 2_000.0


def test_a_body_still_coming_when_caught_up_keeps_the_next_request_from_dating_early() -> None:
    arrivals = Arrivals()
    arrivals.read(1_000, 5_000, now=1.0)  # a head, part of a 10,000-byte body, more unread
    assert arrivals.date(10_000, now=1.0) == 1.0
    arrivals.caught_up()  # the handler reads the body: nothing queued
    arrivals.read(9_100, 0, now=5.0)  # the body's rest and the next request, in one read
    assert arrivals.date(100, now=5.0) == 5.0


def test_the_notes_stay_few_however_the_bytes_trickle_in() -> None:
    arrivals = Arrivals()
    arrivals.read(100, 0, now=0.0)
    arrivals.date(10_000, now=0.0)  # a request whose body trickles, a byte a read
    for byte in range(1, 10_000):
        arrivals.read(1, 1, now=float(byte))
    assert arrivals.notes <= 64
