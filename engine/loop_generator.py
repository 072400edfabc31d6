"""The "hold/loop" generator (LD_GENERATOR_LOOP): repeats the last bar of the context that
has sound throughout, else the last that has any (so a silent stretch, e.g. windows made
before an engine restart heard anything, or the half-heard bar where it came back, is not
held forever once input arrives).

A user mode (keep the groove going while the model is off) and a test fixture whose output
is exactly predictable. It is not a model and is never presented as one.
"""
from __future__ import annotations

import numpy as np

from engine.generator import WindowRequest
from engine.timeline import round_half_up


def bar_frames(request: WindowRequest) -> int:
    return round_half_up(request.tsig_num * 4 / request.tsig_den * 60.0 * request.sample_rate / request.tempo_bpm)


def sounds_throughout(bar: np.ndarray, pieces: int = 16) -> bool:
    """No sixteenth of the bar is digital silence (a bar heard only from its middle on is not)."""
    usable = bar.shape[1] // pieces * pieces
    return usable > 0 and bool(np.abs(bar[:, :usable]).reshape(bar.shape[0], pieces, -1).max(axis=(0, 2)).all())


class LoopGenerator:
    name = "loop"

    def generate(self, request: WindowRequest) -> np.ndarray:
        """Output frame i is the last sounding context bar at phase i mod bar length."""
        context = request.context
        period = min(bar_frames(request), context.shape[1])
        total = request.frames + request.tail_frames
        if period == 0:
            return np.zeros((context.shape[0], total), np.float32)
        starts = range(context.shape[1] - period, -1, -period)      # last bar first
        bars = [context[:, start:start + period] for start in starts]
        last_bar = next((bar for bar in bars if sounds_throughout(bar)),
                        next((bar for bar in bars if bar.any()), bars[0]))
        return np.ascontiguousarray(last_bar[:, np.arange(total) % period], dtype=np.float32)

    def generate_batch(self, requests: list[WindowRequest]) -> list[np.ndarray]:
        return [self.generate(r) for r in requests]
