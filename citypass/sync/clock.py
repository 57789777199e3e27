"""The gate's clock offset, estimated from issuer-signed time ticks.

Each tick says "the issuer's clock read ``t`` when I sent this". The gate notes its own clock ``r`` on
arrival, so ``r - t = offset + delay``, where ``offset`` is how far the gate's clock is ahead of the
issuer's and ``delay`` (network and broker) is never negative. The smallest ``r - t`` over the last
few ticks is therefore the best estimate — the same filter NTP's clock-select uses for one-way samples
— and it errs by the smallest delay seen (milliseconds on a healthy link), always towards "ahead".

>>> est = OffsetEstimator(window=4, alarm_s=5.0)
>>> for sent, received in [(100.0, 130.2), (101.0, 131.05), (102.0, 132.4)]:
...     _ = est.add(sent, received)
>>> round(est.offset or 0, 2), est.alarm
(30.05, True)
"""

from __future__ import annotations

from collections import deque


class OffsetEstimator:
    """Offset of the local clock from the issuer's (seconds, positive = gate ahead), with an alarm."""

    def __init__(self, window: int = 16, alarm_s: float = 10.0) -> None:
        self.samples: deque[float] = deque(maxlen=window)
        self.alarm_s = alarm_s
        self.last_sent: float | None = None

    def add(self, issuer_sent: float, local_received: float) -> bool:
        """Add one tick; False (and ignored) for a tick not newer than the last one (a replay)."""
        if self.last_sent is not None and issuer_sent <= self.last_sent:
            return False
        self.last_sent = issuer_sent
        self.samples.append(local_received - issuer_sent)
        return True

    @property
    def offset(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def alarm(self) -> bool:
        """The estimate is past the threshold either way (gate ahead or behind), from two ticks at least.

        One tick is not enough: a tick the issuer sent as the broker went down can reach a gate only when it
        reconnects, seconds later, and alone it reads as a clock that far ahead (seen in ``citypass bench broker``
        after a broker restart: 17–23 s at gates connected a few seconds before). The next tick, ``tick_s`` later,
        is fresh, and the smaller of the two is the estimate.

            >>> est = OffsetEstimator(alarm_s=10.0)
            >>> _ = est.add(1000.0, 1020.0)   # sent before the restart, delivered after it
            >>> est.alarm
            False
            >>> _ = est.add(1030.0, 1030.1)
            >>> round(est.offset or 0, 1), est.alarm
            (0.1, False)
        """
        offset = self.offset
        return offset is not None and len(self.samples) >= 2 and abs(offset) > self.alarm_s
