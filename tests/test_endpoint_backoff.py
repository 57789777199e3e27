"""Reconnect backoff with jitter: clients that lost the broker together do not come back in lockstep."""

from __future__ import annotations

import random

from citypass.sync.endpoint import Endpoint


def test_each_client_draws_its_own_backoff_within_the_jitter() -> None:
    endpoint = Endpoint("127.0.0.1", 1, tls=None, min_backoff_s=1, max_backoff_s=30)
    rng = random.Random(19)
    drawn = [endpoint.backoff(rng) for _ in range(1000)]
    firsts = [first for first, _ in drawn]
    assert all(1 <= first <= 1.5 and ceiling == first * 30 for first, ceiling in drawn)
    assert min(firsts) < 1.05 and max(firsts) > 1.45  # spread over the whole band
    # Ten thousand gates reconnecting after a broker restart: their first attempts fall in 0.1 s buckets
    # of at most a few percent each, where without jitter they would all land in one.
    buckets: dict[int, int] = {}
    for first in firsts:
        buckets[int(first * 10)] = buckets.get(int(first * 10), 0) + 1
    assert len(buckets) >= 5 and max(buckets.values()) < 300
    assert Endpoint("h", 1, tls=None, jitter=0).backoff(rng) == (1, 30)


def test_the_client_is_configured_with_the_drawn_backoff() -> None:
    endpoint = Endpoint("127.0.0.1", 1, tls=None, min_backoff_s=2, max_backoff_s=8)
    delays = set()
    for _ in range(20):
        client = endpoint.client("gate-x")
        first, ceiling = client._reconnect_min_delay, client._reconnect_max_delay
        assert 2 <= first <= 3 and ceiling == first * 4
        delays.add(first)
    assert len(delays) > 10
