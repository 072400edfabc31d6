"""What keeps generated audio anchored to the music it continues, window after window.

A model that continues its own output compounds its small errors: a little louder, a little
smoother each bar, until a free-running jam is a loud drone. Two explicit anchors, both
measured from the context of the same request (so generators stay stateless):

- `match_band_moments` (tokens): each of 24 mel-spaced bands of the generated bar gets the
  reference's mean level and at most its temporal contrast. Level and brightness cannot drift,
  and smearing (contrast lost in the decoder) is undone a little each bar.
- `replicate` (host-rate audio): the model works at 16 kHz mono. Above the crossover, and for
  the side channel, the output takes the reference's last bar at the same bar position
  (bar-aligned band replication), with a gain per frame that follows the generated bar's
  energy. The output keeps the track's bandwidth and stereo image at the host rate.
"""
from __future__ import annotations

import numpy as np

from engine import representation as rep

N_BANDS = 24
CONTRAST_GAIN = (0.8, 1.5)      # how far the temporal contrast of a band may be rescaled
CROSSOVER_HZ = (6500.0, 7500.0)  # model band below, replicated band above (raised-cosine crossover)
GAIN_RANGE = (0.25, 2.0)        # per-frame gain of the replicated high band and side
SOUNDING_RMS = 1e-3             # a bar quieter than -60 dBFS is silence, never a reference


def _band_matrix() -> tuple[np.ndarray, np.ndarray]:
    """(analysis [N_BANDS, N_BINS] with rows summing to 1, synthesis [N_BANDS, N_BINS] with
    columns summing to 1): band means of bins, and bins interpolated from band values."""
    filters = rep.mel_filterbank(N_BANDS, fmin=20.0) + 1e-6
    return filters / filters.sum(axis=1, keepdims=True), filters / filters.sum(axis=0, keepdims=True)


_ANALYSIS, _SYNTHESIS = _band_matrix()


def match_band_moments(tokens: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """tokens [n, FRAMES_PER_TOKEN, N_BINS] with each band's mean (over frames) set to the
    reference's and its spread around the mean rescaled towards the reference's."""
    if reference is None or not len(reference):
        return tokens
    frames = tokens.reshape(-1, rep.N_BINS).astype(np.float64)
    bands = frames @ _ANALYSIS.T
    ref_bands = reference.reshape(-1, rep.N_BINS).astype(np.float64) @ _ANALYSIS.T
    mean, ref_mean = bands.mean(axis=0), ref_bands.mean(axis=0)
    spread = np.clip(ref_bands.std(axis=0) / np.maximum(bands.std(axis=0), 1e-6), *CONTRAST_GAIN)
    # per bin: the mean moved to the reference's, the deviation from the band mean scaled
    band_mean_bins = (bands - mean) @ _SYNTHESIS
    scale_bins = spread @ _SYNTHESIS
    shift_bins = (ref_mean - mean) @ _SYNTHESIS
    matched = frames + shift_bins + band_mean_bins * (scale_bins - 1.0)
    return np.maximum(matched, rep.SILENCE).astype(np.float32).reshape(tokens.shape)


def sounding_bars(audio: np.ndarray, bar_samples: float) -> np.ndarray:
    """[bars] bool: which whole bars (counted back from the end of `audio`) have sound; oldest first."""
    n_bars = int(len(audio) // max(1.0, bar_samples))
    ends = len(audio) - np.round(np.arange(n_bars)[::-1] * bar_samples).astype(np.int64)
    return np.array([np.sqrt(np.mean(audio[max(0, int(round(e - bar_samples))):e] ** 2)) >= SOUNDING_RMS
                     for e in ends], bool)


def _crossover(n: int, sample_rate: float) -> np.ndarray:
    """[n // 2 + 1] high-pass gains of an n-point rfft: 0 below, 1 above the crossover band."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    low, high = CROSSOVER_HZ
    ramp = np.clip((freqs - low) / (high - low), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * ramp)


def frame_gains(generated: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high-band, broadband) amplitude ratio of generated to prior tokens, per frame."""
    gen = generated.reshape(-1, rep.N_BINS).astype(np.float64) * rep.LOG_SCALE
    old = prior.reshape(-1, rep.N_BINS).astype(np.float64) * rep.LOG_SCALE
    top = rep.N_BINS * 3 // 4                      # 6-8 kHz: the band next to the replicated one
    high = np.exp(np.clip((gen[:, top:] - old[:, top:]).mean(axis=1), -3, 3))

    def level(x):
        return np.log(np.exp(2 * (x - x.max())).sum(axis=1)) / 2 + x.max()
    broad = np.exp(np.clip(level(gen) - level(old), -3, 3))
    return np.clip(high, *GAIN_RANGE), np.clip(broad, *GAIN_RANGE)


def replicate(mid: np.ndarray, source: np.ndarray, bar_frames: int, gains: tuple[np.ndarray, np.ndarray],
              frame_seconds: float, sample_rate: int) -> np.ndarray:
    """[channels, n] output from the generated mid (host rate, 16 kHz content) and the host-rate
    `source` whose last bar is replicated at the same bar position: its high band (added to
    the mid) and, for stereo, its side channel, each scaled per frame by `gains`."""
    channels, n = source.shape[0], len(mid)
    bar = source[:, -bar_frames:] if source.shape[1] >= bar_frames else np.pad(
        source, ((0, 0), (bar_frames - source.shape[1], 0)))
    if bar_frames < 2 or not bar.any():
        return np.repeat(mid[None].astype(np.float32), channels, axis=0)
    hp_bar, hp_mid = _crossover(bar_frames, sample_rate), _crossover(n, sample_rate)
    positions = np.arange(n) % bar_frames
    frame_times = np.arange(len(gains[0])) * frame_seconds * sample_rate
    high_gain, side_gain = (np.interp(np.arange(n), frame_times, g) for g in gains)
    low = np.fft.irfft(np.fft.rfft(mid) * (1.0 - hp_mid), n)
    bar_mid = bar.mean(axis=0)
    high = np.fft.irfft(np.fft.rfft(bar_mid) * hp_bar, bar_frames)[positions]
    out_mid = low + high * high_gain
    if channels != 2:
        return np.repeat(out_mid[None].astype(np.float32), channels, axis=0)
    side = ((bar[0] - bar[1]) / 2)[positions] * side_gain
    return np.stack([out_mid + side, out_mid - side]).astype(np.float32)
