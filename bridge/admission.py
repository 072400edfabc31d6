"""Who gets the engine's socket thread: per-identity budgets for refused messages, and
refusal logging that cannot flood the log.

A ZeroMQ routing identity is whatever the peer chose, so every table here is bounded (least
recently seen identities are forgotten first) and a global budget backs the per-identity ones:
a peer cycling through identities still gets no more than the global share. Every method takes
the time as a parameter (no clock inside), so tests need no sleeps. [main-thread] of the server.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

REFUSALS_BURST = 20.0           # refusals an identity may earn at once ...
REFUSALS_PER_SECOND = 5.0       # ... and per second after that
GLOBAL_REFUSALS_PER_SECOND = 200.0
TRUST_AFTER_REFUSAL = 5.0       # a session's identity is trusted again this long after a refusal
LOG_INTERVAL = 5.0              # one refusal line per identity per interval, the rest counted
LOG_LINES_PER_SECOND = 4.0      # and at most this many refusal lines overall
TRACKED_IDENTITIES = 4096


@dataclass
class Bucket:
    """A token bucket: `rate` tokens per second up to `burst`."""
    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = 0.0

    def __post_init__(self):
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def empty(self, now: float) -> bool:
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate) < 1.0


class _Lru(OrderedDict):
    """identity -> value, forgetting the least recently used beyond `size` entries."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def touch(self, key, make):
        value = self.get(key)
        if value is None:
            value = self[key] = make()
            if len(self) > self.size:
                self.popitem(last=False)
        else:
            self.move_to_end(key)
        return value


class Admission:
    """Which messages the socket thread handles. An identity that owns a session and was not
    refused in the last TRUST_AFTER_REFUSAL seconds is trusted: its messages are handled first
    and never budgeted. An identity never refused is handled too (a new plugin's HELLO). One
    that was refused spends a token per refusal, from its own bucket and a global one; when
    either runs dry its messages are dropped unread until they refill."""

    def __init__(self, burst: float = REFUSALS_BURST, rate: float = REFUSALS_PER_SECOND,
                 global_rate: float = GLOBAL_REFUSALS_PER_SECOND):
        self._buckets = _Lru(TRACKED_IDENTITIES)      # identity -> its Bucket, once refused
        self._make = lambda: Bucket(rate, burst)
        self._global = Bucket(global_rate, global_rate)
        self._refused_at: dict[bytes, float] = {}     # kept for the identities in _buckets
        self.dropped = 0

    def trusted(self, identity: bytes, owns_session: bool, now: float) -> bool:
        refused = self._refused_at.get(identity)
        return owns_session and (refused is None or now - refused > TRUST_AFTER_REFUSAL)

    def admit(self, identity: bytes, now: float) -> bool:
        """Whether an untrusted identity's message is handled (or dropped unread)."""
        bucket = self._buckets.get(identity)
        if bucket is not None and (bucket.empty(now) or self._global.empty(now)):
            self.dropped += 1
            return False
        return True

    def refused(self, identity: bytes, now: float) -> None:
        """One of identity's messages was refused: it pays for it."""
        self._buckets.touch(identity, self._make).take(now)
        self._global.take(now)
        self._refused_at[identity] = now
        if len(self._refused_at) > 2 * TRACKED_IDENTITIES:   # drop what _buckets forgot
            self._refused_at = {i: self._refused_at[i] for i in self._buckets}


class RefusalLog:
    """Logs refusals at most once per identity every LOG_INTERVAL seconds and at most
    LOG_LINES_PER_SECOND lines overall; the next line an identity gets says how many of its
    refusals went unlogged meanwhile."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL,
                 lines_per_second: float = LOG_LINES_PER_SECOND):
        self._log = logger
        self._interval = interval
        self._lines = Bucket(lines_per_second, lines_per_second * interval)
        self._seen = _Lru(TRACKED_IDENTITIES)     # identity -> [last logged, unlogged count]

    def refused(self, identity: bytes, level: int, text: str, now: float, exc_info: bool = False) -> bool:
        """Log one refusal (or count it); True if a line was written."""
        entry = self._seen.touch(identity, lambda: [-float("inf"), 0])
        if now - entry[0] < self._interval or not self._lines.take(now):
            entry[1] += 1
            return False
        unlogged = f" ({entry[1]} more refusals from it not logged since)" if entry[1] else ""
        self._log.log(level, "refused a message from %s: %s%s", identity.hex(), text, unlogged, exc_info=exc_info)
        entry[0], entry[1] = now, 0
        return True
