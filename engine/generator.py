"""What the scheduler asks of any generator (the diffusion model, or the loop baseline).

A generator turns a bar-aligned context into the next window of audio, at the host's
sample rate and tempo. Everything a backend needs is in the request, so generators are
stateless and the same request always gives the same audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class WindowRequest:
    context: np.ndarray        # float32 [channels, n] at sample_rate; ends on a bar line; zero-padded on the left when less was heard
    sample_rate: int           # host rate in Hz
    tempo_bpm: float
    tsig_num: int
    tsig_den: int
    context_bars: int          # bars the context spans (n == context_bars * bar length, rounded)
    bars: int                  # window length in bars
    frames: int                # exact window length in samples at sample_rate
    tail_frames: int           # extra frames past the window end, used for the seam crossfade
    style: int
    seed: int                  # already mixed with the window's bar index by the scheduler
    bar_index: int = 0         # bar the window starts on (for logs and phase-aware models)
    # The track alone: the last context_bars bars of the session's context source (input or
    # sidechain; never the model's own output), at least two phrases of them (engine.context.input_bars),
    # ending at the horizon's bar line, each bar brought to this window's bar length. None
    # (callers that have only input): the context.
    input_context: np.ndarray | None = None
    input_gap_bars: int = 0    # whole bars between the end of input_context and the window start
    # The track as it last sounded: up to a phrase (engine.context.memory_bars) of the newest bars
    # before the horizon in which the context source had sound, oldest first, each brought to
    # this window's bar length. While the track is silent, a generator holds what it makes to
    # this, not to its own previous output (which drifts). None: the track never sounded (or the
    # caller has none).
    track_memory: np.ndarray | None = None
    # The host bar index of each bar of track_memory (None: not known), so that a generator can
    # hold each bar of a free-running jam to the track's bar at the same place in its phrase.
    track_memory_bars: tuple[int, ...] | None = None
    steps: int | None = None   # sampler steps a preset asks for; None: the generator's own
    # share (0..1) of the model's small changes to the track's own bar that pass, where a window
    # continues it (the `variation` parameter): 0 keeps that bar wherever the model barely
    # changes it; 1 lets every change through. Generators without a change gate ignore it.
    variation: float = 0.0

    def __post_init__(self):
        if self.input_context is None:
            object.__setattr__(self, "input_context", self.context)


class Generator(Protocol):
    name: str

    def generate(self, request: WindowRequest) -> np.ndarray:
        """float32 [channels, frames + tail_frames] at request.sample_rate."""
        ...

    def generate_batch(self, requests: list[WindowRequest]) -> list[np.ndarray]:
        """Same as generate() for each request; may share one forward pass."""
        ...
