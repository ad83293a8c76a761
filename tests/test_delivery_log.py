"""Gossip's numbered log of delivered events (read by ``satellite chaos``): bounded in
bytes, whatever the events' sizes, and read back in pages without a gap."""

from __future__ import annotations

import tracemalloc

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from actors.overlay import DELIVERY_ENTRY_COST, DeliveryLog

events = st.lists(
    st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=3000)), max_size=200
)


def cost(name: str, data: bytes) -> int:
    return len(name) + len(data) + DELIVERY_ENTRY_COST


@given(events, st.integers(1, 20_000))
def test_the_log_keeps_the_newest_events_within_its_budget(appended, budget) -> None:
    log = DeliveryLog(budget)
    for name, data in appended:
        log.append(name, data)
    kept = list(log.entries)
    assert log.last == len(appended)
    assert log.first == len(appended) + 1 - len(kept)
    assert kept == appended[len(appended) - len(kept) :]  # the newest, in order
    assert log.bytes == sum(cost(n, d) for n, d in kept)
    if len(kept) > 1:  # over budget only when the newest entry alone is
        assert log.bytes <= budget
    if len(kept) < len(appended):  # and it kept as many as the budget holds
        assert log.bytes + cost(*appended[-len(kept) - 1]) > budget


@given(events, st.integers(1, 50), st.integers(1, 5000), st.integers(-3, 250))
def test_pages_read_back_every_event_kept_after_a_number(appended, most, most_bytes, since):
    log = DeliveryLog(100_000)
    for name, data in appended:
        log.append(name, data)
    read: list[list] = []
    cursor = since
    while True:
        page = log.page(cursor, most, most_bytes)
        if not page:
            break
        assert len(page) <= most
        if len(page) > 1:  # one event, however large, or what fits
            assert sum(len(name) + len(data) for _, name, data in page) <= most_bytes
        read += page
        cursor = page[-1][0]
    start = max(since + 1, log.first)
    assert [n for n, _, _ in read] == list(range(start, log.last + 1))
    assert [(name, data) for _, name, data in read] == [
        appended[n - 1] for n in range(start, log.last + 1)
    ]


def test_a_full_log_holds_about_its_budget_in_memory() -> None:
    # The entry cost stands for what CPython allocates per entry: a log of small events
    # must not hold much more than its budget (20,000 events of ~50 bytes held 4.25 MiB
    # when the log was bounded by count).
    budget = 256 << 10
    tracemalloc.start()
    try:
        log = DeliveryLog(budget)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            data = msgpack.packb({"on": True, "by": "slack-bot", "at": 1733300000.0 + i})
            log.append("lights-" + str(i % 7), data)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(log.entries) < 20_000
    assert held < budget * 1.2, held
