"""Where placed windows go: the interface the engine publishes through (bridge/shm.py's
TimelineStore implements it over shared memory), and what kind of audio a window holds."""
from __future__ import annotations

import enum
from typing import Protocol

import numpy as np


class WindowKind(enum.Enum):
    PREROLL = "preroll"        # nothing to continue yet: published silent so offline waits end
    STRETCHED = "stretched"    # time-stretched stand-in after a tempo change
    GENERATED = "generated"    # made by the generator


class StoreFull(RuntimeError):
    """Every slot holds audio at or ahead of the playhead: the window must wait."""


class Publisher(Protocol):
    """One session's timeline store. [any-thread]"""
    capacity: int               # frames one slot holds (longer windows take several)
    slot_count: int

    def publish(self, *, epoch: int, start_sample: int, bar_index: int, start_beat: float, tempo_bpm: float,
                kind: WindowKind, grid: int, audio: np.ndarray) -> int:
        """Publish audio[:, 0] at start_sample of epoch, made for the shim's grid sequence
        `grid`; returns its window id (a larger id wins where two windows overlap). Raises
        StoreFull."""
        ...

    def acknowledge(self, window_id: int, grid: int) -> None:
        """The window's audio is right for grid sequence `grid` too (it did not move)."""
        ...

    def withdraw(self, window_id: int) -> int:
        """Drop one window's slots; returns how many."""
        ...

    def invalidate(self, epoch: int, from_sample: int) -> int:
        """Drop every window of `epoch` that ends after from_sample; returns how many slots."""
        ...

    def set_playhead(self, epoch: int, sample: int) -> None:
        """Slots behind this point may be reused."""
        ...
