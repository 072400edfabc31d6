"""Shared DSP: seam crossfades, fitting audio to a length, time-stretching, peak limiting and
resampling. One home for them, so the scheduler, the generators and the evaluation all do the
same thing. Pure functions on float32 [channels, n] arrays (limit also takes 1-D).
"""
from __future__ import annotations

import math

import numpy as np

SEAM_SECONDS = 0.03            # seam crossfade length (Magenta RT uses 40 ms); = the shim's LD_SEAM_MS (test_layout)
PEAK_CEILING = 10 ** (-0.1 / 20)   # -0.1 dBFS: no published window goes above it
SLICE_FADE_SECONDS = 0.003     # regrid: fade where one slice gives way to the next
SLICE_LEAD_SECONDS = 0.005     # regrid: slices are cut this far ahead of their grid line
SLICE_RELEASE_SECONDS = 0.025  # regrid: a slice made longer fades out over this (an abrupt end is an onset)
SLICE_RESAMPLE = 0.02          # regrid: a slice made at most this much longer is resampled instead


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


def _slice(audio: np.ndarray, start: int, own: int, length: int, release: int) -> np.ndarray:
    """`length` frames from `start`: the slice's own `own` frames and, if it must last longer
    (by more than SLICE_RESAMPLE), silence after them (its last `release` frames faded out), as a DAW's beat-slicing warp mode
    does without looping: a sustain that loops or smears the slice's tail gives the music (and
    the model hearing it as context) attacks and washes that are not on the grid, and so does
    an abrupt end. Past the end of `audio` it continues from its start."""
    piece = fit(audio, start + max(1, min(own, length)))[:, start:]
    if piece.shape[1] >= length:
        return piece[:, :length]
    if length <= piece.shape[1] * (1 + SLICE_RESAMPLE):    # a hair longer: resampled (a pitch change under 34 cents)
        positions = np.arange(length, dtype=np.float64) * ((piece.shape[1] - 1) / max(1, length - 1))
        return np.stack([np.interp(positions, np.arange(piece.shape[1]), ch) for ch in piece]).astype(np.float32)
    n = min(release, piece.shape[1])
    piece = piece.copy()
    piece[:, piece.shape[1] - n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return np.pad(piece, ((0, 0), (0, length - piece.shape[1])))


def regrid(audio: np.ndarray, source_marks: np.ndarray, target_marks: np.ndarray, frames: int,
           sample_rate: int) -> np.ndarray:
    """Move audio from one grid to another by slicing: the slice between source_marks[i] and
    [i + 1] is laid between target_marks[i] and [i + 1] (both increasing; target_marks[0] is 0,
    the last marks are where the audio and its new place end). A slice that gets shorter is
    cut where the next one begins (a short fade); one that gets longer ends with its own decay
    (_slice). Each cut sits SLICE_LEAD before its mark, so an attack a little ahead of the
    grid stays whole. Transients land exactly on the new grid and the pitch is kept; `frames`
    frames out. Audio past the source's end continues it from its start."""
    lead, fade = round(SLICE_LEAD_SECONDS * sample_rate), round(SLICE_FADE_SECONDS * sample_rate)
    release = round(SLICE_RELEASE_SECONDS * sample_rate)
    out = np.zeros((audio.shape[0], frames + fade), np.float32)
    source_marks, target_marks = np.round(source_marks).astype(int), np.round(target_marks).astype(int)
    shift = np.minimum(lead, np.minimum(np.maximum(source_marks, 0), target_marks))
    shift[0] = shift[-1] = 0        # where the audio and its new place begin and end
    sources, targets = np.maximum(0, source_marks - shift), target_marks - shift
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
    written = 0                 # frames of `out` that hold audio (a slice of no length writes nothing)
    last = len(sources) - 2
    for i in range(last + 1):
        source, target = sources[i], targets[i]
        overlap = fade if i < last else 0     # the last slice ends at the end: nothing fades in after it
        length = min(frames, targets[i + 1]) - target + overlap
        if length <= overlap:
            continue
        piece = _slice(audio, source, sources[i + 1] - source + overlap, length, release)
        if written > target:
            n = min(fade, length)
            out[:, target:target + n] = out[:, target:target + n] * (1 - ramp[:n]) + piece[:, :n] * ramp[:n]
            out[:, target + n:target + length] = piece[:, n:]
        else:
            out[:, max(0, target):target + length] = piece[:, max(0, -target):]
        written = target + length
    return out[:, :frames]


def to_length(audio: np.ndarray, frames: int, sample_rate: int, marks: np.ndarray) -> np.ndarray:
    """`audio` (a bar) brought to exactly `frames` frames, its events kept where they are in
    the bar (a bar heard at one tempo made as long as a bar at another). `marks` are where its
    16th notes are in it (the first at 0; unevenly spaced when the tempo changed inside it);
    they go to evenly spaced ones. A bar at one tempo is unchanged when its length is right
    (to a sample) and resampled by linear interpolation for differences under 0.5 % (a pitch
    change under 9 cents); otherwise its 16th notes are laid on the new grid (regrid)."""
    n = audio.shape[1]
    target = np.arange(len(marks) + 1) * (frames / len(marks))
    if n and np.abs(marks - np.arange(len(marks)) * (n / len(marks))).max() <= 1:
        if abs(n - frames) <= 1:            # a sample of bar-line rounding is not a tempo
            return fit(audio, frames)
        if abs(frames / n - 1) < 0.005:
            positions = np.arange(frames, dtype=np.float64) * (n / frames)
            return np.stack([np.interp(positions, np.arange(n), channel) for channel in audio]).astype(np.float32)
    return regrid(audio, np.append(marks, n), target, frames, sample_rate)


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
