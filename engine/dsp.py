"""Shared DSP: seam crossfades, fitting audio to a length, time-stretching, peak limiting and
resampling. One home for them, so the scheduler, the generators and the evaluation all do the
same thing. Pure functions on float32 [channels, n] arrays (limit also takes 1-D).
"""
from __future__ import annotations

import math

import numpy as np

SEAM_SECONDS = 0.03            # seam crossfade length (Magenta RT uses 40 ms); = the shim's LD_SEAM_MS (test_layout)
PEAK_CEILING = 10 ** (-0.1 / 20)   # -0.1 dBFS: no published window goes above it


def equal_power_crossfade(previous_tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Fade from the previous window's continuation into this window's first frames:
    gains cos/sin of a quarter turn, so uncorrelated material keeps its power."""
    return crossfade(previous_tail, head, r=0.0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two equally long stretches (0 when either is silent)."""
    energy = math.sqrt(float(np.sum(a.astype(np.float64) ** 2)) * float(np.sum(b.astype(np.float64) ** 2)))
    return float(np.sum(a.astype(np.float64) * b)) / energy if energy > 1e-12 else 0.0


def crossfade(previous_tail: np.ndarray, head: np.ndarray, r: float | None = None) -> np.ndarray:
    """Fade from `previous_tail` into the first frames of `head`, keeping the level whatever the
    two have in common: with correlation r (measured over the fade when not given, clamped to
    [0, 1]) the fade-out gain solves g_out^2 + g_in^2 + 2 r g_out g_in = 1, so uncorrelated
    material keeps its power (equal-power fade, r = 0) and identical material its amplitude
    (g_out + g_in = 1, r = 1). An equal-power fade of correlated windows would rise by up to
    3 dB in the middle of every seam."""
    n = min(previous_tail.shape[1], head.shape[1])
    out = head.copy()
    if n == 0:
        return out
    tail, start = previous_tail[:, :n].astype(np.float64), head[:, :n].astype(np.float64)
    r = min(1.0, max(0.0, correlation(tail, start) if r is None else r))
    t = np.arange(n, dtype=np.float64) / n
    fade_in = (1 - r) * np.sin(t * math.pi / 2) + r * t
    fade_out = -r * fade_in + np.sqrt(np.maximum(0.0, 1 - fade_in ** 2 * (1 - r * r)))
    out[:, :n] = (tail * fade_out + start * fade_in).astype(np.float32)
    return out


def fit(audio: np.ndarray, frames: int) -> np.ndarray:
    """`frames` frames of audio: cut, or continued by repeating it from its start."""
    if audio.shape[1] >= frames:
        return audio[:, :frames]
    if audio.shape[1] == 0:
        return np.zeros((audio.shape[0], frames), np.float32)
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])), mode="wrap")


def stretch(audio: np.ndarray, sample_rate: int, from_tempo: float, to_tempo: float) -> np.ndarray:
    """Audio made at from_tempo, time-stretched to to_tempo (pitch kept)."""
    from pedalboard import time_stretch
    return time_stretch(np.ascontiguousarray(audio, np.float32), float(sample_rate), to_tempo / from_tempo,
                        high_quality=False).astype(np.float32)


def to_length(audio: np.ndarray, frames: int, sample_rate: int) -> np.ndarray:
    """`audio` brought to exactly `frames` frames, its events kept where they are in proportion
    (a bar heard at one tempo made as long as a bar at another): unchanged when the length is
    right, linear-interpolation resampling for differences under 0.5 % (a pitch change under
    9 cents), time-stretching with the pitch kept for larger ones."""
    n = audio.shape[1]
    if n == frames or n == 0:
        return fit(audio, frames)
    ratio = frames / n
    if abs(ratio - 1) < 0.005:
        positions = np.arange(frames, dtype=np.float64) * (n / frames)
        return np.stack([np.interp(positions, np.arange(n), channel) for channel in audio]).astype(np.float32)
    stretched = stretch(audio, sample_rate, 1.0, 1.0 / ratio)
    if stretched.shape[1] < frames:   # the stretcher may come back a few frames short
        stretched = np.pad(stretched, ((0, 0), (0, frames - stretched.shape[1])))
    return np.ascontiguousarray(stretched[:, :frames])


def limit(audio: np.ndarray, ceiling: float = 0.98, block: int = 256) -> np.ndarray:
    """Peak limiter to <= ceiling (below 0 dBFS) on [n] or [channels, n] audio (one gain for all
    channels). Audio under the ceiling passes untouched; otherwise the gain each block of
    samples needs is also applied to its neighbours and interpolated between block centres, so
    it dips smoothly around a peak instead of clipping."""
    frames = audio.shape[-1]
    if frames == 0 or np.abs(audio).max() <= ceiling:
        return audio.astype(np.float32)
    peak = np.abs(audio) if audio.ndim == 1 else np.abs(audio).max(axis=0)
    n_blocks = -(-frames // block)
    peaks = np.pad(peak, (0, n_blocks * block - frames)).reshape(n_blocks, block).max(axis=1)
    needed = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-9))
    padded = np.pad(needed, 1, constant_values=1.0)
    held = np.minimum(np.minimum(padded[:-2], padded[1:-1]), padded[2:])
    # between two block centres the gain is a mix of two held gains, each <= what both blocks need
    gain = np.interp(np.arange(frames), np.arange(n_blocks) * block + (block - 1) / 2, held)
    return np.clip(audio * gain, -ceiling, ceiling).astype(np.float32)


def resample(audio: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """[channels, n] float32 through pedalboard's 16-tap windowed-sinc resampler (latency
    compensated; the model's content is band-limited well below the 16 kHz Nyquist)."""
    from pedalboard import Resample
    from pedalboard.io import StreamResampler
    audio = np.ascontiguousarray(audio, np.float32)
    if source_rate == target_rate:
        return audio
    resampler = StreamResampler(source_rate, target_rate, audio.shape[0], Resample.Quality.WindowedSinc16)
    out = np.concatenate([resampler.process(audio), resampler.process(None)], axis=1)
    expected = int(round(audio.shape[1] * target_rate / source_rate))
    return np.ascontiguousarray(out[:, :expected])
