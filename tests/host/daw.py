"""What a DAW's session looks like to a plugin, for scripted-host tests: the host's own tempo
map and meters (exact), the blocks it calls process() with (Ardour's export: a 768-frame
pre-roll at negative positions, then 1024-frame blocks, so bar lines fall inside blocks), the
transport it reports per block (the tempo at the block start, the musical position quantized
to its ticks: Ardour 1/1920 beat, qtractor 960 ticks as float32), a drum track played on its
grid, and the share of onsets of generated audio on its 16th grid (../shared/BRIEF.md §1c, §2b).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from engine import representation as rep
from engine.dsp import resample

GRID_TOLERANCE_S = 0.020


@dataclass(frozen=True)
class Session:
    """The host's tempo map: `tempos` are (beat, BPM) steps from each beat on (the first at
    beat 0, extending backwards), `meters` (beat, num, den) likewise; `ticks` per beat of its
    musical position (0: exact) and whether it passes them as float32 (qtractor)."""
    rate: int = 48000
    tempos: tuple[tuple[float, float], ...] = ((0.0, 120.0),)
    meters: tuple[tuple[float, int, int], ...] = ((0.0, 4, 4),)
    ticks: int = 1920
    float32: bool = False
    _samples: list[float] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self):
        samples = [0.0]
        for (b0, t0), (b1, _) in zip(self.tempos, self.tempos[1:]):
            samples.append(samples[-1] + (b1 - b0) * 60.0 * self.rate / t0)
        self._samples[:] = samples

    def sample_at(self, beat: float) -> float:
        i = max(0, bisect.bisect_right([b for b, _ in self.tempos], beat) - 1)
        b0, tempo = self.tempos[i]
        return self._samples[i] + (beat - b0) * 60.0 * self.rate / tempo

    def beat_at(self, sample: float) -> float:
        i = max(0, bisect.bisect_right(self._samples, sample) - 1)
        b0, tempo = self.tempos[i]
        return b0 + (sample - self._samples[i]) * tempo / 60.0 / self.rate

    def tempo_at(self, sample: float) -> float:
        return self.tempos[max(0, bisect.bisect_right(self._samples, sample) - 1)][1]

    def meter_at(self, beat: float) -> tuple[float, int, int]:
        return self.meters[max(0, bisect.bisect_right([m[0] for m in self.meters], beat) - 1)]

    def bar_start(self, beat: float) -> float:
        start, num, den = self.meter_at(beat)
        bar = num * 4 / den
        return start + math.floor((beat - start) / bar + 1e-9) * bar

    def bar_lines(self, end_beat: float) -> list[float]:
        """Bar lines in beats from 0 up to end_beat."""
        lines, beat = [], 0.0
        while beat <= end_beat:
            lines.append(beat)
            _, num, den = self.meter_at(beat)
            beat += num * 4 / den
        return lines

    def reported_beats(self, sample: float) -> float:
        """The musical position the host reports: quantized to its ticks (and float32)."""
        beat = self.beat_at(sample)
        if self.ticks:
            beat = round(beat * self.ticks) / self.ticks
        return float(np.float32(beat)) if self.float32 else beat

    def sixteenths(self, start_sample: float, end_sample: float) -> np.ndarray:
        """Samples of the 16th notes in [start, end)."""
        first, last = math.ceil(self.beat_at(start_sample) * 4 - 1e-9), math.floor(self.beat_at(end_sample) * 4)
        return np.array([self.sample_at(k / 4) for k in range(first, last + 1) if self.sample_at(k / 4) < end_sample])


def ramp(start_beat: float, end_beat: float, from_tempo: float, to_tempo: float, step: float = 1 / 16):
    """A tempo ramp as the host's map has it: a new tempo every `step` beats."""
    count = round((end_beat - start_beat) / step)
    return tuple((start_beat + k * step, from_tempo + (to_tempo - from_tempo) * k / count) for k in range(count)) \
        + ((end_beat, to_tempo),)


def blocks(end_sample: int, preroll: int = 768, block: int = 1024) -> list[tuple[int, int]]:
    """(first sample, frames) of each process() call: Ardour's export, a pre-roll at negative
    positions, then equal blocks."""
    out, pos = [(-preroll, preroll)], 0
    while pos < end_sample:
        out.append((pos, min(block, end_sample - pos)))
        pos += block
    return out


def drums(session: Session, end_sample: int, silent_from: float = math.inf, channels: int = 2) -> np.ndarray:
    """A drum track on the host's grid: a decaying noise hit on every 16th (louder on 8ths and
    beats), silent from sample `silent_from` on."""
    out = np.zeros((channels, end_sample), np.float32)
    rng = np.random.default_rng(3)
    hit = rng.uniform(-1, 1, round(0.03 * session.rate)) * np.exp(-np.arange(round(0.03 * session.rate)) / (0.004 * session.rate))
    for k, at in enumerate(session.sixteenths(0, end_sample)):
        at = round(at)
        if at >= silent_from:
            break
        level = 0.8 if k % 4 == 0 else 0.5 if k % 2 == 0 else 0.25
        n = min(len(hit), end_sample - at)
        out[:, at:at + n] += (level * hit[:n]).astype(np.float32)
    return out


def song(session: Session, end_sample: int, style: int = 0, seed: int = 11, silent_from: float = math.inf,
         channels: int = 2) -> np.ndarray:
    """A procedural song of the built-in model's training styles (engine/music.py) that follows
    the host's map: each stretch of constant tempo and meter is the song rendered at that tempo
    and meter, at the same beats (bars counted from where the meter began)."""
    from engine.music import render_song
    from engine.styles import load_styles
    out = np.zeros((channels, end_sample), np.float32)
    starts = sorted({b for b, _ in session.tempos} | {m[0] for m in session.meters})
    end_beat = session.beat_at(end_sample)
    for b0, b1 in zip(starts, starts[1:] + [end_beat + 1]):
        if b0 > end_beat:
            break
        tempo = session.tempo_at(session.sample_at(b0) + 1)
        origin, num, den = session.meter_at(b0)
        bars = math.ceil((min(b1, end_beat) - origin) / (num * 4 / den)) + 1
        audio = render_song(load_styles()[style], tempo, (num, den), bars, seed).audio
        rate = rep.SAMPLE_RATE * 60.0 / tempo          # model samples per beat
        piece = audio[round((b0 - origin) * rate):round((min(b1, end_beat) - origin) * rate)]
        host = resample(piece[None], rep.SAMPLE_RATE, session.rate)[0]
        at = round(session.sample_at(b0))
        n = min(host.shape[0], end_sample - at)
        out[:, at:at + n] = host[:n]
    out[:, round(min(silent_from, end_sample)):] = 0.0
    return out


def on_grid_share(audio: np.ndarray, session: Session, start_sample: int, end_sample: int) -> tuple[float, int]:
    """(share of onsets within 20 ms of the host's 16th grid, onsets) in [start, end) of host-rate audio."""
    mono = resample(audio[:1, start_sample:end_sample], session.rate, rep.SAMPLE_RATE)[0]
    onsets = start_sample + rep.onset_times(mono) * session.rate
    grid = session.sixteenths(start_sample - session.rate, end_sample + session.rate)
    if len(onsets) == 0:
        return 0.0, 0
    off = np.min(np.abs(onsets[:, None] - grid[None, :]), axis=1) / session.rate
    return float(np.mean(off <= GRID_TOLERANCE_S)), len(onsets)
