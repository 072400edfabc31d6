"""Helpers shared by the model tests: held-out songs turned into engine requests."""
from __future__ import annotations

import numpy as np

from engine import representation as rep
from engine.generator import WindowRequest
from engine.music import render_song
from engine.presets import load_presets


def song_request(seed: int, tempo: float = 120.0, tsig: tuple[int, int] = (4, 4), sample_rate: int = 44100,
                 bars: int = 1, style: int = 0, context_bars: int = 2, tail_frames: int = 256,
                 request_seed: int = 7) -> tuple[WindowRequest, np.ndarray]:
    """(request continuing a held-out song after `context_bars` bars, the true continuation at 16 kHz)."""
    song = render_song(load_presets()[style], tempo, tsig, context_bars + bars, 5_000_000 + seed)
    bar = int(round(rep.sixteenths_per_bar(*tsig) * rep.sixteenth_samples(tempo)))
    context = rep.resample(song.audio[None, : context_bars * bar], rep.SAMPLE_RATE, sample_rate)
    bar_seconds = rep.sixteenths_per_bar(*tsig) * 15.0 / tempo
    request = WindowRequest(context=np.repeat(context, 2, axis=0), sample_rate=sample_rate, tempo_bpm=tempo,
                            tsig_num=tsig[0], tsig_den=tsig[1], context_bars=context_bars, bars=bars,
                            frames=int(round(bars * bar_seconds * sample_rate)), tail_frames=tail_frames,
                            style=style, seed=request_seed, bar_index=context_bars)
    return request, song.audio[context_bars * bar: (context_bars + bars) * bar]
