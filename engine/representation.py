"""Audio <-> model tokens, in musical time.

The model sees log-magnitude STFT frames whose hop is tied to the tempo: every 16th note
spans exactly FRAMES_PER_TOKEN frames, and one token is one 16th note. A bar is therefore
always the same number of tokens at any tempo, beats land on token boundaries by
construction, and tempo is only the mapping from frames to samples. Decoding runs
Griffin-Lim (with momentum) at the host tempo's hop.

Also here: the audio analysis that works on the same spectra (onset envelope, tempo
estimate, log-mel), used by evaluation and by fine-tuning on user loops.
"""
from __future__ import annotations

import numpy as np

from engine.dsp import resample  # noqa: F401 - callers use rep.resample for model-rate audio

SAMPLE_RATE = 16000
N_FFT = 1024
N_BINS = N_FFT // 2 + 1
FRAMES_PER_TOKEN = 8
PHRASE_BARS = 4                 # the phrase the model knows its position in (and the engine re-seeds on)
TEMPO_MIN, TEMPO_MAX = 60.0, 200.0
# Width of the style one-hot the shipped weights were trained with: ids below the header's
# LD_STYLE_COUNT (presets/styles/) are trained, the slots above it never were.
STYLE_SLOTS = 8
# The meters the condition vector names: every other meter is told as the nearest of these
# "families" (duple x/4, odd x/4, compound x/8, odd x/8); its true bar length and beat
# positions reach the model through the phase features.
TIME_SIGNATURES = ((4, 4), (3, 4), (6, 8), (7, 8))
TRAINED_METERS = ((4, 4), (3, 4), (6, 8), (7, 8), (5, 4), (6, 4), (9, 8), (12, 8), (5, 8), (2, 4))
DENOMINATORS = (1, 2, 4, 8, 16)
MAX_BAR_SIXTEENTHS = 64
MAX_CONTEXT_BARS = 8                # the most context the model is trained on (the plugin's context_bars range)
MAX_CONTEXT_TOKENS = 128            # 8 bars of 4/4: longer bars get fewer context bars
CONTEXT_BARS = 2                    # the default (LD_CONTEXT_BARS_DEFAULT)
PHASE_FEATURES = 9
CONDITION_FEATURES = STYLE_SLOTS + 1 + len(TIME_SIGNATURES)
# log-magnitude normalisation: (log(mag + floor) - center) / scale puts speech-level audio near 0
_LOG_FLOOR, _LOG_CENTER, LOG_SCALE = 1e-4, -7.0, 1.5
SILENCE = (np.log(_LOG_FLOOR) - _LOG_CENTER) / LOG_SCALE


def check_tempo(tempo_bpm: float) -> None:
    if not np.isfinite(tempo_bpm) or not TEMPO_MIN <= tempo_bpm <= TEMPO_MAX:
        raise ValueError(f"tempo {tempo_bpm} BPM is outside the model's range; allowed: {TEMPO_MIN:g} to {TEMPO_MAX:g} BPM")


def meter_supported(tsig_num: int, tsig_den: int) -> bool:
    return (tsig_den in DENOMINATORS and isinstance(tsig_num, (int, np.integer)) and tsig_num >= 1
            and tsig_num * 16 // tsig_den <= MAX_BAR_SIXTEENTHS)


def sixteenths_per_bar(tsig_num: int, tsig_den: int) -> int:
    if not meter_supported(tsig_num, tsig_den):
        raise ValueError(f"time signature {tsig_num}/{tsig_den} is not supported by the model; allowed: any "
                         f"N/1, N/2, N/4, N/8 or N/16 of at most {MAX_BAR_SIXTEENTHS} 16th notes per bar")
    return tsig_num * 16 // tsig_den


def beat_starts(tsig: tuple[int, int]) -> tuple[int, ...]:
    """16th-note positions where beats start: quarter (half, whole) notes for N/4 (N/2, N/1),
    dotted quarters for compound N/8 (6/8, 9/8, 12/8), groups of 2 + ... + 3 eighths for odd
    N/8 (5/8 = 2+3, 7/8 = 2+2+3), groups of four 16ths for N/16."""
    num, den = tsig
    bar_len = sixteenths_per_bar(num, den)
    if den <= 4:
        return tuple(range(0, bar_len, 16 // den))
    if den == 16:
        return tuple(range(0, bar_len - 2 if bar_len > 4 else 1, 4))
    if num % 3 == 0 and num > 3:
        return tuple(range(0, bar_len, 6))
    if num <= 3:
        return (0,)
    return tuple(range(0, bar_len - 4 - 2, 4)) + (bar_len - 6,) if num % 2 else tuple(range(0, bar_len, 4))


def meter_family(tsig: tuple[int, int]) -> int:
    """Index into TIME_SIGNATURES of the family the condition vector names for `tsig`."""
    num, den = tsig
    if den <= 4:
        return 1 if num % 2 else 0
    return 2 if num % 3 == 0 else 3


def context_bars_for(tsig: tuple[int, int], asked: int) -> int:
    """Bars of context the model reads: what was asked (1..MAX_CONTEXT_BARS), at most MAX_CONTEXT_TOKENS."""
    return max(1, min(int(asked), MAX_CONTEXT_BARS, MAX_CONTEXT_TOKENS // sixteenths_per_bar(*tsig)))


def phase_features(first_token: int, n_tokens: int, tsig: tuple[int, int], first_bar: int) -> np.ndarray:
    """[n_tokens, PHASE_FEATURES] musical position of each 16th: within the beat, the bar and the
    PHRASE_BARS-bar phrase, beat/downbeat flags, and the signed distance (in bars) from the window start.
    Token 0 of the window is the first 16th of bar `first_bar`; context tokens have negative k."""
    bar_len = sixteenths_per_bar(*tsig)
    k = np.arange(first_token, first_token + n_tokens)
    in_bar = k % bar_len
    bar = first_bar + k // bar_len
    angle = lambda x, period: (np.sin(2 * np.pi * x / period), np.cos(2 * np.pi * x / period))  # noqa: E731
    features = [*angle(k % 4, 4), *angle(in_bar, bar_len), *angle(bar % PHRASE_BARS, PHRASE_BARS),
                np.isin(in_bar, beat_starts(tsig)), in_bar == 0, np.clip(k / bar_len, -8, 8) / 8]
    return np.stack(features, axis=1).astype(np.float32)


def condition_vector(style: int, tempo_bpm: float, tsig: tuple[int, int]) -> np.ndarray:
    """[CONDITION_FEATURES]: style one-hot, log2 tempo relative to 120 BPM, meter family one-hot."""
    if not 0 <= style < STYLE_SLOTS:
        raise ValueError(f"style {style} is out of range; allowed: 0 to {STYLE_SLOTS - 1}")
    check_tempo(tempo_bpm)
    sixteenths_per_bar(*tsig)
    vector = np.zeros(CONDITION_FEATURES, np.float32)
    vector[style] = 1.0
    vector[STYLE_SLOTS] = np.log2(tempo_bpm / 120.0)
    vector[STYLE_SLOTS + 1 + meter_family(tsig)] = 1.0
    return vector


def outpainting_inputs(context: np.ndarray, tsig: tuple[int, int], first_bar: int, n_target: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For context tokens ending on the window's first bar line: (context phase, the prior -
    each target token's same position in the last context bar - and target phase)."""
    bar_len = sixteenths_per_bar(*tsig)
    last_bar = context[-bar_len:]
    prior = last_bar[np.arange(n_target) % bar_len]
    return (phase_features(-len(context), len(context), tsig, first_bar), prior,
            phase_features(0, n_target, tsig, first_bar))


def sixteenth_samples(tempo_bpm: float, sample_rate: float = SAMPLE_RATE) -> float:
    return sample_rate * 15.0 / tempo_bpm


def _hop(tempo_bpm: float) -> float:
    return sixteenth_samples(tempo_bpm) / FRAMES_PER_TOKEN


def _window(tempo_bpm: float) -> np.ndarray:
    """Hann window of four hops (at most N_FFT), so overlap stays >= 2x at every tempo."""
    length = min(N_FFT, 2 * int(round(2 * _hop(tempo_bpm))))
    return np.hanning(length + 2)[1:-1]


def _frame_index(start: float, n_frames: int, tempo_bpm: float, window_len: int) -> np.ndarray:
    """Sample indices [n_frames, window_len] of frames centred on start + j * hop."""
    centres = np.round(start + np.arange(n_frames) * _hop(tempo_bpm)).astype(np.int64)
    return centres[:, None] + np.arange(window_len)[None, :] - window_len // 2


def _padded(audio: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """audio zero-padded so that every frame index is inside, and the index shifted to match."""
    pad = max(0, -int(index.min()))
    tail = max(0, int(index.max()) + 1 - len(audio))
    return np.pad(audio, (pad, tail)), index + pad


def _stft(audio: np.ndarray, index: np.ndarray, window: np.ndarray) -> np.ndarray:
    padded, shifted = _padded(audio, index)
    return np.fft.rfft(padded[shifted] * window, n=N_FFT, axis=-1)


def spectra(audio: np.ndarray, tempo_bpm: float, start_sample: float, n_tokens: int) -> np.ndarray:
    """Complex STFT [n_tokens, FRAMES_PER_TOKEN, N_BINS] of the 16ths starting at start_sample (model rate)."""
    window = _window(tempo_bpm)
    index = _frame_index(start_sample, n_tokens * FRAMES_PER_TOKEN, tempo_bpm, len(window))
    return _stft(np.asarray(audio, np.float64), index, window).reshape(n_tokens, FRAMES_PER_TOKEN, N_BINS)


def tokens_of(spectrum: np.ndarray, tempo_bpm: float) -> np.ndarray:
    """Normalised log-magnitude tokens of spectra()."""
    magnitude = np.abs(spectrum) * (2.0 / _window(tempo_bpm).sum())
    return ((np.log(magnitude + _LOG_FLOOR) - _LOG_CENTER) / LOG_SCALE).astype(np.float32)


def encode(audio: np.ndarray, tempo_bpm: float, start_sample: float, n_tokens: int) -> np.ndarray:
    """Tokens [n_tokens, FRAMES_PER_TOKEN, N_BINS] for the 16ths starting at start_sample (model rate)."""
    return tokens_of(spectra(audio, tempo_bpm, start_sample, n_tokens), tempo_bpm)


def decode(tokens: np.ndarray, tempo_bpm: float, n_samples: int, seed: int, iterations: int = 16,
           prefix: np.ndarray | None = None, phase: np.ndarray | None = None) -> np.ndarray:
    """Audio (model rate, float32, n_samples long) whose spectra match the tokens: fast Griffin-Lim
    (Perraudin et al. 2013, momentum 0.99). `prefix`, the audio just before the first token
    (the context), is held fixed under the first frames, so the window continues the context
    without a seam. `phase` (radians, tokens' shape) starts the iterations, e.g. the phases of
    the same positions one bar earlier: a repeated hit then starts out as sharp as it was."""
    window = _window(tempo_bpm)  # float64 throughout: numpy's float32 FFT is ~4x slower here
    frames = tokens.reshape(-1, N_BINS).astype(np.float64)
    magnitude = np.maximum(np.exp(frames * LOG_SCALE + _LOG_CENTER) - _LOG_FLOOR, 0.0) * (window.sum() / 2.0)
    index = _frame_index(0.0, len(frames), tempo_bpm, len(window))
    pad = -int(index.min())
    length = max(n_samples + pad, int(index.max()) + 1 + pad)
    flat = (index + pad).ravel()
    norm = np.bincount(flat, np.tile(window * window, len(frames)), minlength=length)
    inverse_norm = 1.0 / np.maximum(norm, 1e-3 * window.max() ** 2)
    known = None
    if prefix is not None and len(prefix):
        known = np.zeros(pad)
        known[pad - min(pad, len(prefix)):] = prefix[-pad:]

    def overlap_add(spectrum: np.ndarray) -> np.ndarray:
        segments = np.fft.irfft(spectrum, n=N_FFT, axis=-1)[:, : len(window)] * window
        signal = np.bincount(flat, segments.ravel(), minlength=length) * inverse_norm
        if known is not None:
            signal[:pad] = known
        return signal

    shifted = index + pad

    def analyse(signal: np.ndarray) -> np.ndarray:
        return np.fft.rfft(signal[shifted] * window, n=N_FFT, axis=-1)

    if phase is None:  # the phase a steady partial at each bin centre would have
        phase = 2 * np.pi * (np.outer(index[:, 0], np.arange(N_BINS)) % N_FFT / N_FFT)
    jitter = 0.2 * np.pi * np.random.default_rng(seed).random(magnitude.shape)  # the seed varies the decode a little
    spectrum = magnitude * np.exp(1j * (np.reshape(phase, magnitude.shape) + jitter))
    previous = spectrum
    for _ in range(iterations):
        rebuilt = analyse(overlap_add(spectrum))
        accelerated = 1.99 * rebuilt - 0.99 * previous
        previous = rebuilt
        spectrum = accelerated * (magnitude / np.maximum(np.abs(accelerated), 1e-12))
    return overlap_add(spectrum)[pad: pad + n_samples].astype(np.float32)


# --- analysis on log spectra -------------------------------------------------------------

def mel_filterbank(n_mels: int = 64, fmin: float = 30.0, fmax: float = SAMPLE_RATE / 2) -> np.ndarray:
    """[n_mels, N_BINS] triangular filters on the HTK mel scale."""
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    edges = 700.0 * (10 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    bins = np.linspace(0, SAMPLE_RATE / 2, N_BINS)
    rising = (bins[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.maximum(0.0, np.minimum(rising, falling))


def log_mel(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    """[frames, 64] natural-log mel power of model-rate audio, fixed hop (10 ms by default)."""
    window = np.hanning(N_FFT // 2)
    centres = np.arange(0, len(audio), hop)
    index = centres[:, None] + np.arange(len(window))[None, :] - len(window) // 2
    power = (np.abs(_stft(np.asarray(audio, np.float64), index, window)) * (2.0 / window.sum())) ** 2
    return np.log(power @ mel_filterbank().T + 1e-6)  # full-scale sine = 0, floor at -60 dB


def onset_envelope(audio: np.ndarray, hop: int = 80, suppress_glides: bool = True) -> np.ndarray:
    """Spectral flux at a 5 ms hop. With `suppress_glides`, SuperFlux (Boeck & Widmer, DAFx
    2013): each mel band's rise over the loudest of it and its two neighbours 2 frames earlier.
    Plain log-mel flux also rises where a sound's energy moves into the next band (a swell, a
    sweep), which read as onsets between the 16ths of songs whose notes all start on them
    (precision against the scores 0.89 -> 0.97)."""
    mel = log_mel(audio, hop)
    if suppress_glides:
        padded = np.pad(mel, ((0, 0), (1, 1)), mode="edge")
        reference, lag = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:]), 2
    else:
        reference, lag = mel, 1
    flux = np.maximum(mel[lag:] - reference[:-lag], 0.0).mean(axis=1)
    return np.concatenate([np.zeros(min(lag, len(mel))), flux])


def onset_times(audio: np.ndarray, hop: int = 80) -> np.ndarray:
    """Onset times in seconds: local maxima of the flux above an adaptive threshold, >= 50 ms apart."""
    env = onset_envelope(audio, hop)
    if env.max() <= 0:
        return np.zeros(0)
    width = 10
    padded = np.pad(env, width, mode="edge")
    local_mean = np.convolve(padded, np.ones(2 * width + 1) / (2 * width + 1), mode="same")[width:-width]
    threshold = local_mean + 0.3 * env.std() + 0.05 * env.max()
    peaks = [i for i in range(1, len(env) - 1) if env[i] >= env[i - 1] and env[i] > env[i + 1] and env[i] > threshold[i]]
    times, last = [], -1.0
    for i in peaks:
        t = i * hop / SAMPLE_RATE
        if t - last >= 0.05:
            times.append(t)
            last = t
    return np.array(times)


def estimate_tempo(audio: np.ndarray, low: float = TEMPO_MIN, high: float = TEMPO_MAX) -> float:
    """BPM from the autocorrelation of the onset envelope, refined to a fraction of a lag."""
    hop = 80
    # the plain flux: swells recur with the beat too (true songs within 1 %: 13 of 16, 11 suppressed)
    env = onset_envelope(audio, hop, suppress_glides=False)
    env = env - env.mean()
    corr = np.correlate(env, env, mode="full")[len(env) - 1:]
    frame_rate = SAMPLE_RATE / hop
    lags = np.arange(int(frame_rate * 60 / high), int(frame_rate * 60 / low) + 1)
    lags = lags[lags < len(corr) - 1]
    if len(lags) == 0:
        raise ValueError("audio too short to estimate a tempo (need at least ~2 beats)")
    # a beat lag also correlates at 2x, 4x: sum harmonics so the true period wins
    score = np.array([corr[lag] + 0.5 * corr[min(2 * lag, len(corr) - 1)] for lag in lags])
    best = lags[int(np.argmax(score))]
    a, b, c = corr[best - 1], corr[best], corr[best + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return float(60.0 * frame_rate / (best + np.clip(shift, -0.5, 0.5)))
