"""Helpers shared by the model tests: held-out songs turned into engine requests."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine import representation as rep
from engine.evaluate import window_request
from engine.generator import WindowRequest
from engine.music import render_song
from engine.styles import load_styles


def song_request(seed: int, tempo: float = 120.0, tsig: tuple[int, int] = (4, 4), sample_rate: int = 44100,
                 bars: int = 1, style: int = 0, context_bars: int = 2, tail_frames: int = 256,
                 request_seed: int = 7) -> tuple[WindowRequest, np.ndarray]:
    """(request continuing a held-out song after `context_bars` bars, the true continuation at 16 kHz)."""
    song = render_song(load_styles()[style], tempo, tsig, context_bars + bars, 5_000_000 + seed)
    bar = int(round(rep.sixteenths_per_bar(*tsig) * rep.sixteenth_samples(tempo)))
    request = window_request(song.audio[: context_bars * bar], song, bars, request_seed, context_bars,
                             sample_rate, context_bars)
    return replace(request, tail_frames=tail_frames), song.audio[context_bars * bar: (context_bars + bars) * bar]
