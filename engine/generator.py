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


class Generator(Protocol):
    name: str

    def generate(self, request: WindowRequest) -> np.ndarray:
        """float32 [channels, frames + tail_frames] at request.sample_rate."""
        ...

    def generate_batch(self, requests: list[WindowRequest]) -> list[np.ndarray]:
        """Same as generate() for each request; may share one forward pass."""
        ...
