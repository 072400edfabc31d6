"""The "hold/loop" generator (LD_GENERATOR_LOOP): repeats the last bar of the context that
has sound (so a silent stretch, e.g. windows made before an engine restart heard anything,
is not held forever once input arrives).

A user mode (keep the groove going while the model is off) and a test fixture whose output
is exactly predictable. It is not a model and is never presented as one.
"""
from __future__ import annotations

import numpy as np

from engine.generator import WindowRequest
from engine.timeline import round_half_up


def bar_frames(request: WindowRequest) -> int:
    return round_half_up(request.tsig_num * 4 / request.tsig_den * 60.0 * request.sample_rate / request.tempo_bpm)


class LoopGenerator:
    name = "loop"

    def generate(self, request: WindowRequest) -> np.ndarray:
        """Output frame i is the last sounding context bar at phase i mod bar length."""
        context = request.context
        period = min(bar_frames(request), context.shape[1])
        total = request.frames + request.tail_frames
        if period == 0:
            return np.zeros((context.shape[0], total), np.float32)
        end = context.shape[1]
        while end - period > 0 and not context[:, end - period:end].any():
            end -= period
        last_bar = context[:, end - period:end]
        return np.ascontiguousarray(last_bar[:, np.arange(total) % period], dtype=np.float32)

    def generate_batch(self, requests: list[WindowRequest]) -> list[np.ndarray]:
        return [self.generate(r) for r in requests]
