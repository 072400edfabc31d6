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
TOLERANCE_DB = 0.0              # a band's level may differ this much from the reference's
ONSET_FRAMES = 3                # frames at the start of a 16th where an attack may land
GATE_RISE_DB = 1.0              # how far a band may rise later in the 16th
EQ_RANGE = np.log(10 ** (9 / 20))  # the decoder correction stays within +-9 dB per band
SPECTRUM_BANDS = 30             # log-spaced bands the host-rate output's spectrum is held to
LEVEL_TOLERANCE_DB = 0.0        # the window's RMS may differ this much from the reference's
CROSSOVER_HZ = (5500.0, 6500.0)  # model band below, replicated band above (raised-cosine crossover)
GAIN_RANGE = (0.25, 2.0)        # per-frame gain of the replicated high band and side
SOUNDING_RMS = 1e-3             # a bar quieter than -60 dBFS is silence, never a reference


def _band_matrix() -> tuple[np.ndarray, np.ndarray]:
    """(analysis [N_BANDS, N_BINS] with rows summing to 1, synthesis [N_BANDS, N_BINS] with
    columns summing to 1): band means of bins, and bins interpolated from band values."""
    filters = rep.mel_filterbank(N_BANDS, fmin=20.0) + 1e-6
    return filters / filters.sum(axis=1, keepdims=True), filters / filters.sum(axis=0, keepdims=True)


_ANALYSIS, _SYNTHESIS = _band_matrix()


def _band_levels(frames: np.ndarray) -> np.ndarray:
    """[N_BANDS] log RMS magnitude (nats) of each band over all frames of normalised tokens."""
    energy = np.exp(2 * rep.LOG_SCALE * frames.reshape(-1, rep.N_BINS).astype(np.float64)).mean(axis=0)
    return np.log(energy @ _ANALYSIS.T + 1e-30) / 2


def match_band_moments(tokens: np.ndarray, reference: np.ndarray | None, tolerance_db: float = TOLERANCE_DB
                       ) -> np.ndarray:
    """tokens [n, FRAMES_PER_TOKEN, N_BINS] with each band's level (RMS over frames) brought to
    within `tolerance_db` of the reference's, and its temporal contrast (spread of the log level
    around its mean) rescaled towards the reference's. Inside the tolerance the model is free:
    a fill or a drop may change the level a little from one bar to the next."""
    if reference is None or not len(reference):
        return tokens
    frames = tokens.reshape(-1, rep.N_BINS).astype(np.float64)
    ref = reference.reshape(-1, rep.N_BINS).astype(np.float64)
    bands, ref_bands = frames @ _ANALYSIS.T, ref @ _ANALYSIS.T
    spread = np.clip(ref_bands.std(axis=0) / np.maximum(bands.std(axis=0), 1e-6), *CONTRAST_GAIN)
    # contrast first: the deviation of each bin from its band's mean over frames scaled
    frames = frames + ((bands - bands.mean(axis=0)) @ _SYNTHESIS) * (spread @ _SYNTHESIS - 1.0)
    slack, target = tolerance_db / 20 * np.log(10), _band_levels(ref)
    for _ in range(2):  # then the levels; twice, since neighbouring bands overlap
        excess = target - _band_levels(np.maximum(frames, rep.SILENCE))
        frames = frames + (np.sign(excess) * np.maximum(np.abs(excess) - slack, 0.0) / rep.LOG_SCALE) @ _SYNTHESIS
    return np.maximum(frames, rep.SILENCE).astype(np.float32).reshape(tokens.shape)


def grid_gate(tokens: np.ndarray, rise_db: float = GATE_RISE_DB) -> np.ndarray:
    """Energy may rise only at a 16th-note boundary: within each token, after the first
    ONSET_FRAMES frames, a band's level may not climb more than `rise_db` above the previous
    frame's (nor above the loudest onset frame). The host grid is the music's grid, so an attack
    between two 16ths is a decoder or drift artefact."""
    frames = tokens.astype(np.float64)
    bands = frames @ _ANALYSIS.T                                 # [n, FRAMES_PER_TOKEN, N_BANDS]
    margin = rise_db / 20 * np.log(10) / rep.LOG_SCALE
    held = bands.copy()
    level = bands[:, :ONSET_FRAMES].max(axis=1)
    for j in range(ONSET_FRAMES, bands.shape[1]):
        held[:, j] = np.minimum(bands[:, j], level + margin)
        level = held[:, j]
    return np.maximum(frames + (held - bands) @ _SYNTHESIS, rep.SILENCE).astype(np.float32)


def bar_rms(audio: np.ndarray, bar_samples: float) -> np.ndarray:
    """[bars] RMS of each whole bar of `audio` ([n] or [channels, n]), counted back from its end
    (which is a bar line); oldest first. A bar short by rounding still counts."""
    audio = np.atleast_2d(audio).astype(np.float64)
    n_bars = int(round(audio.shape[1] / max(1.0, bar_samples)))
    ends = audio.shape[1] - np.round(np.arange(n_bars)[::-1] * bar_samples).astype(np.int64)
    return np.array([np.sqrt(np.mean(audio[:, max(0, int(round(e - bar_samples))):e] ** 2)) if e > 0 else 0.0
                     for e in ends])


def sounding_bars(audio: np.ndarray, bar_samples: float) -> np.ndarray:
    """[bars] bool: which whole bars (counted back from the end of `audio`) have sound; oldest first."""
    return bar_rms(audio, bar_samples) >= SOUNDING_RMS


def level_gain(window: np.ndarray, reference: np.ndarray, bar_frames: int, tolerance_db: float = LEVEL_TOLERANCE_DB
               ) -> float:
    """The gain that brings the window's RMS to within `tolerance_db` of the RMS of the
    reference's loudest bar (1 when none sounds): a drop in the context is a moment, not the
    song's level. The last anchor: what the token-level one cannot see (the decoder, the
    replicated band) may not move the level either."""
    loudness = bar_rms(reference, bar_frames)
    if not (loudness >= SOUNDING_RMS).any() or not window.size:
        return 1.0
    target = loudness.max()
    level = np.sqrt(np.mean(window.astype(np.float64) ** 2))
    if level < 1e-9:
        return 1.0
    excess = 20 * np.log10(target / level)
    return float(10 ** (np.sign(excess) * max(0.0, abs(excess) - tolerance_db) / 20))


def _crossover(n: int, sample_rate: float) -> np.ndarray:
    """[n // 2 + 1] high-pass gains of an n-point rfft: 0 below, 1 above the crossover band
    (sin of a quarter turn; the low side takes the cos, so the two add up in power)."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    low, high = CROSSOVER_HZ
    return np.sin(np.pi / 2 * np.clip((freqs - low) / (high - low), 0.0, 1.0))


def _log_bands(n: int, sample_rate: float) -> np.ndarray:
    """[n // 2 + 1] band index of each rfft bin: SPECTRUM_BANDS log-spaced bands from 20 Hz."""
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
    edges = np.geomspace(20.0, sample_rate / 2, SPECTRUM_BANDS + 1)
    return np.clip(np.searchsorted(edges, freqs) - 1, 0, SPECTRUM_BANDS - 1)


def spectrum_gains(spectrum: np.ndarray, reference: np.ndarray, sample_rate: float) -> np.ndarray:
    """Gains for the rfft `spectrum` that give it the band levels (power per bin, averaged over
    SPECTRUM_BANDS log-spaced bands) of the rfft `reference` (of any length), within EQ_RANGE;
    1 where either is silent."""
    def band_power(x):
        n = 2 * (len(x) - 1)
        bands = _log_bands(n, sample_rate)
        power = np.abs(x) ** 2 / max(1, n)   # per-bin density: the same for any length
        return np.bincount(bands, power, SPECTRUM_BANDS) / np.maximum(np.bincount(bands, None, SPECTRUM_BANDS), 1)
    have, want = band_power(spectrum), band_power(reference)
    floor = 1e-14 * max(have.max(), want.max(), 1e-30)
    ratio = np.where((have > floor) & (want > floor), want / np.maximum(have, floor), 1.0)
    gains = np.clip(np.sqrt(ratio), np.exp(-EQ_RANGE), np.exp(EQ_RANGE))
    return gains[_log_bands(2 * (len(spectrum) - 1), sample_rate)]


def frame_gains(generated: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high-band, broadband) amplitude ratio of generated to prior tokens, per frame."""
    gen = generated.reshape(-1, rep.N_BINS).astype(np.float64) * rep.LOG_SCALE
    old = prior.reshape(-1, rep.N_BINS).astype(np.float64) * rep.LOG_SCALE
    top = rep.N_BINS * 3 // 4                      # 6-8 kHz: the band next to the replicated one
    high = np.exp(np.clip((gen[:, top:] - old[:, top:]).mean(axis=1), -3, 3))

    def level(x):
        return np.log(np.exp(2 * (x - x.max())).sum(axis=1)) / 2 + x.max()
    broad = np.exp(np.clip(level(gen) - level(old), -3, 3))
    # shapes only (median 1): the replicated level stays the source's, so it cannot compound
    return tuple(np.clip(g / np.median(g), *GAIN_RANGE) for g in (high, broad))


def replicate(mid: np.ndarray, source: np.ndarray, bar_frames: int, gains: tuple[np.ndarray, np.ndarray],
              frame_seconds: float, sample_rate: int, body_frames: int | None = None) -> np.ndarray:
    """[channels, n] output from the generated mid (host rate, 16 kHz content) and the host-rate
    `source` (ending on the window's bar line) whose loudest bar is replicated at the same bar
    position: its high band (added to the mid) and, for stereo, its side channel, each scaled
    per frame by `gains`. Over the window's first `body_frames` frames (default: all), the side
    keeps that bar's level and the mid its spectrum, band by band. The loudest bar: a drop in
    the context is not what the track sounds like."""
    channels, n = source.shape[0], len(mid)
    loudness = bar_rms(source, bar_frames)
    loudest = int(np.argmax(loudness)) if len(loudness) else 0
    end = source.shape[1] - (len(loudness) - 1 - loudest) * bar_frames if len(loudness) else source.shape[1]
    padded = np.pad(source, ((0, 0), (bar_frames, 0)))      # a bar shorter by rounding, or no bar at all
    bar = padded[:, end: end + bar_frames]
    if bar_frames < 2 or not bar.any():
        return np.repeat(mid[None].astype(np.float32), channels, axis=0)
    hp_bar, hp_mid = _crossover(bar_frames, sample_rate), _crossover(n, sample_rate)
    positions = np.arange(n) % bar_frames
    frame_times = np.arange(len(gains[0])) * frame_seconds * sample_rate
    high_gain, side_gain = (np.interp(np.arange(n), frame_times, g) for g in gains)
    bar_mid = bar.mean(axis=0)
    bar_spectrum = np.fft.rfft(bar_mid)
    bar_high = np.fft.irfft(bar_spectrum * hp_bar, bar_frames)
    high = bar_high[positions] * high_gain
    high *= level_gain(high[None, :body_frames or n], bar_high[None], bar_frames)
    # the sum gets the bar's spectrum, band by band: whatever the model's band and the replicated
    # band have in common around the crossover cannot add up window after window
    spectrum = np.fft.rfft(mid) * np.sqrt(1.0 - hp_mid ** 2) + np.fft.rfft(high)
    body = np.fft.irfft(spectrum, n)[:body_frames or n]    # measured without the tail: the next downbeat
    gains = spectrum_gains(np.fft.rfft(body), bar_spectrum, sample_rate)
    out_mid = np.fft.irfft(spectrum * np.interp(np.fft.rfftfreq(n), np.fft.rfftfreq(len(body)), gains), n)
    if channels != 2:
        return np.repeat(out_mid[None].astype(np.float32), channels, axis=0)
    bar_side = (bar[0] - bar[1]) / 2
    side = bar_side[positions] * side_gain
    side *= level_gain(side[None, :body_frames or n], bar_side[None], bar_frames)
    return np.stack([out_mid + side, out_mid - side]).astype(np.float32)
