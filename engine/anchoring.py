"""What keeps generated audio anchored to the music it continues, window after window.

A model that continues its own output compounds its small errors: a little louder, a little
smoother each bar, until a free-running jam is a loud drone. Explicit anchors, all
measured from the context of the same request (so generators stay stateless):

- `match_band_moments` (tokens): each of 24 mel-spaced bands of the generated bar gets the
  reference's mean level and at most its temporal contrast. Level and brightness cannot drift,
  and smearing (contrast lost in the decoder) is undone a little each bar.
- `keep_small_changes` (tokens): a window that continues the track's own bar keeps that bar
  in every 16th the model changes only a little (a blur, not a change).
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
EQ_RANGE = np.log(10 ** (9 / 20))  # the spectrum hold stays within +-9 dB per band
SPECTRUM_BANDS = 30             # log-spaced bands the decoded output's spectrum is held to
LEVEL_TOLERANCE_DB = 0.0        # the window's RMS may differ this much from the reference's
CROSSOVER_HZ = (8000.0, 8500.0)  # model band below, replicated band above (raised-cosine crossover)
GAIN_RANGE = (0.25, 2.0)        # per-frame gain of the replicated high band and side
CHANGE_GATE = 0.3               # token units (1 = 13 dB): a 16th's RMS change under which it keeps its prior
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


def keep_small_changes(tokens: np.ndarray, prior: np.ndarray, threshold: float = CHANGE_GATE) -> np.ndarray:
    """Each 16th whose RMS change from its prior token is under `threshold` is the prior
    exactly; over twice it, the model's; in between, the change scaled linearly. Where the bar
    repeats, the network's correction is a blur of the changes it has learnt to expect, the
    same for any noise seed (four seeds averaged: 1.218 against 1.217), and only takes the bar
    away from the music. A real change moves whole 16ths (a drop) or a few bins by a lot (a new
    chord's partials): the RMS keeps both, where the mean change let a chord move through as
    the bar before (the true next bar decoded 0.45 from itself, against 0.27 with the RMS)."""
    change = np.asarray(tokens, np.float32) - prior
    flat = change.reshape(len(change), -1)
    size = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float64) / max(1, flat.shape[1]))
    weight = np.clip(size / threshold - 1.0, 0.0, 1.0).astype(np.float32)
    return (prior + change * weight.reshape(-1, *(1,) * (change.ndim - 1))).astype(np.float32)


def bar_rms(audio: np.ndarray, bar_samples: float) -> np.ndarray:
    """[bars] RMS of each whole bar of `audio` ([n] or [channels, n]), counted back from its end
    (which is a bar line); oldest first. A bar short by rounding still counts."""
    audio = np.atleast_2d(audio).astype(np.float64)
    n_bars = int(round(audio.shape[1] / max(1.0, bar_samples)))
    ends = audio.shape[1] - np.round(np.arange(n_bars)[::-1] * bar_samples).astype(np.int64)
    return np.array([np.sqrt(np.mean(audio[:, max(0, int(round(e - bar_samples))):e] ** 2)) if e > 0 else 0.0
                     for e in ends])


def sounds(audio: np.ndarray) -> bool:
    """Whether `audio` ([n] or [channels, n]) has sound: RMS over all of it at least SOUNDING_RMS."""
    return audio.size > 0 and float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) >= SOUNDING_RMS


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
    (sin of a quarter turn), which lies above the 16 kHz model's Nyquist: nothing the model
    makes is replicated on top of itself, so nothing adds up from window to window."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    low, high = CROSSOVER_HZ
    return np.sin(np.pi / 2 * np.clip((freqs - low) / (high - low), 0.0, 1.0))


def _log_bands(n: int, sample_rate: float) -> np.ndarray:
    """[n // 2 + 1] band index of each rfft bin: SPECTRUM_BANDS log-spaced bands from 20 Hz."""
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sample_rate), 20.0)
    edges = np.geomspace(20.0, sample_rate / 2, SPECTRUM_BANDS + 1)
    return np.clip(np.searchsorted(edges, freqs) - 1, 0, SPECTRUM_BANDS - 1)


def spectrum_gains(spectrum: np.ndarray, frames: int, reference: np.ndarray, reference_frames: int,
                   sample_rate: float) -> np.ndarray:
    """Gains for the rfft `spectrum` (of `frames` samples, zero-padded or not) that give it the band
    levels (power per sample, averaged over SPECTRUM_BANDS log-spaced bands) of the rfft
    `reference` (of `reference_frames` samples), within EQ_RANGE; 1 where either is silent."""
    def band_power(x, m):
        bands = _log_bands(2 * (len(x) - 1), sample_rate)
        power = np.abs(x) ** 2 / max(1, m)
        return np.bincount(bands, power, SPECTRUM_BANDS) / np.maximum(np.bincount(bands, None, SPECTRUM_BANDS), 1)
    have, want = band_power(spectrum, frames), band_power(reference, reference_frames)
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


def anchor_bar(audio: np.ndarray, bar_frames: int, newest: bool = False, pick: int | None = None
               ) -> np.ndarray | None:
    """The loudest whole bar of `audio` ([n] or [channels, n], ending on a bar line; a bar short
    by rounding is padded) - or with `newest`, its newest sounding bar, or with `pick`, its bar
    of that index (oldest first) if it sounds - or None when none has sound."""
    audio = np.atleast_2d(audio)
    loudness = bar_rms(audio, bar_frames)
    if bar_frames < 2 or not len(loudness) or loudness.max() < SOUNDING_RMS:
        return None
    if pick is None or not 0 <= pick < len(loudness) or loudness[pick] < SOUNDING_RMS:
        pick = int(np.flatnonzero(loudness >= SOUNDING_RMS)[-1]) if newest else int(np.argmax(loudness))
    end = audio.shape[1] - (len(loudness) - 1 - pick) * bar_frames
    return np.pad(audio, ((0, 0), (bar_frames, 0)))[:, end: end + bar_frames]


def fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: numpy's FFT of a length with a large prime factor is
    several times slower (a 1-bar window at 16 kHz is often such a length)."""
    best = 1 << max(0, int(n - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            length = three * (1 << max(0, int(-(-n // three) - 1).bit_length()))
            best = min(best, length)
            three *= 3
        five *= 5
    return best


def _periodic_high_band(bar: np.ndarray, sample_rate: float) -> np.ndarray:
    """The band above the crossover of one bar, as if the bar repeated forever (so that tiling
    it has no seam at the bar lines), through an FFT of a fast length."""
    n, margin = len(bar), 4096
    length = fast_length(n + 2 * margin)
    extended = bar[(np.arange(length) - margin) % n]
    return np.fft.irfft(np.fft.rfft(extended) * _crossover(length, sample_rate), length)[margin: margin + n]


def hold_spectrum(audio: np.ndarray, reference_bar: np.ndarray | None, body_frames: int, sample_rate: float
                  ) -> np.ndarray:
    """`audio` with its first `body_frames` frames (without the seam tail, which hears the next
    downbeat) brought to the reference bar's spectrum, band by band; the same gains for the tail.
    At the model rate, after the decoder: what Griffin-Lim loses where its phases cancel (most
    in the low bands) would otherwise be handed from window to window."""
    if reference_bar is None:
        return audio
    n, fast = len(audio), fast_length(len(audio))
    gains = spectrum_gains(np.fft.rfft(audio[:body_frames], fast_length(body_frames)), body_frames,
                           np.fft.rfft(reference_bar, fast_length(len(reference_bar))), len(reference_bar), sample_rate)
    smooth = np.interp(np.fft.rfftfreq(fast), np.fft.rfftfreq(2 * (len(gains) - 1)), gains)
    return np.fft.irfft(np.fft.rfft(audio, fast) * smooth, fast)[:n].astype(np.float32)


def replicate(mid: np.ndarray, bar: np.ndarray | None, channels: int, gains: tuple[np.ndarray, np.ndarray],
              frame_seconds: float, sample_rate: int, body_frames: int | None = None) -> np.ndarray:
    """[channels, n] output from the generated mid (host rate, content below 8 kHz) and a host-rate
    `bar` of the track (an anchor_bar; None: none sounds) replicated at the same bar position:
    its band above 8 kHz (added to the mid, where the model has nothing) and, for stereo, its
    side channel, each scaled per frame by `gains` and held at that bar's level over the
    window's first `body_frames` frames (default: all)."""
    n = len(mid)
    if bar is None:
        return np.repeat(mid[None].astype(np.float32), channels, axis=0)
    bar_frames = bar.shape[1]
    body = slice(0, body_frames or n)
    positions = np.arange(n) % bar_frames
    frame_times = np.arange(len(gains[0])) * frame_seconds * sample_rate
    high_gain, side_gain = (np.interp(np.arange(n), frame_times, g) for g in gains)
    bar_high = _periodic_high_band(bar.mean(axis=0), sample_rate)
    high = bar_high[positions] * high_gain
    out_mid = mid + high * level_gain(high[None, body], bar_high[None], bar_frames)
    if channels != 2:
        return np.repeat(out_mid[None].astype(np.float32), channels, axis=0)
    bar_side = (bar[0] - bar[1]) / 2
    side = bar_side[positions] * side_gain
    side *= level_gain(side[None, body], bar_side[None], bar_frames)
    return np.stack([out_mid + side, out_mid - side]).astype(np.float32)
