"""The built-in diffusion generator: a WindowRequest in, host-rate audio out.

Per window: mix the context to mid (mono), resample it to the model rate (pedalboard),
encode the last `context_bars` bars into beat-synchronous tokens, run the context encoder
once, denoise the target tokens in a few steps, keep the track's bar where the model barely
changes it (anchoring.keep_small_changes), anchor their level and spectral shape to the
reference (engine/anchoring.py; not where the window continues the host's newest bar, which it
is expected to change), decode with Griffin-Lim at the host tempo, resample to the host rate,
put back the reference's high band and side channel, and limit.

The track leads: when the track alone (`input_context`: input only, up to the horizon) has
sound in its newest bar, that bar - not the model's own previous window - is the prior the
model corrects, and the track is the reference its level is held to and the source of the
replicated high band and stereo. The model's own output carries the music only where the
input is silent, and is then held to the track as it last sounded (`track_memory`).
"""
from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine import anchoring
from engine import representation as rep
from engine import samplers
from engine.backends import DENOISER_FILE, ENCODER_FILE, WEIGHTS_DIR, WEIGHTS_FILE
from engine.dsp import limit
from engine.generator import WindowRequest
from engine.loop_generator import LoopGenerator, bar_frames

BACKENDS = ("auto", "torch", "onnx")
# While the track is silent, the first bar of every phrase (rep.PHRASE_BARS, on the host's bar
# grid) corrects the track's newest sounding bar instead of the model's own previous bar, so the
# model's errors compound over at most RESEED_BARS - 1 windows. Its own bar for every window, the
# texture thinned to thumps and blips within a minute; the track's bar for every window put
# fewer onsets on the grid (Griffin-Lim on real bars makes more off-grid attacks than on its own).
RESEED_BARS = rep.PHRASE_BARS
# A bar of the track's memory this far under its loudest is a break: a moment of the track, which
# a free-running jam does not repeat every phrase (the memory's loudest bar stands in for it).
BREAK_DB = 10.0
log = logging.getLogger("livediff.diffusion")


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 2
    # the noise schedule (samplers.noise_levels) of a window whose prior is the track's own bar:
    # with 2 steps, rho 3.32 refines the first x0, which has heard the track, from t = 0.1 instead
    # of 0.5 (the track playing 1.7 % closer to the song; rho 2, t = 0.25: 1.3 %); a window that
    # continues the model's own output keeps rho_own (rho 2 there: no closer, fewer onsets on the
    # grid in a slow song)
    rho: float = 3.32
    rho_own: float = 1.0
    # a window that continues the track's bar one phrase back starts from that bar noised to this
    # level (SDEdit) instead of from pure noise: the track playing 2.2 % closer to the song
    # (8 other songs 2.2 %; 0.8: 0.9 %, 0.4: 1.5 %, 0.2: 0.5 % further)
    lead_strength: float = 0.6
    # a 16th of a window that continues the track's own bar keeps that bar's token where the
    # model's RMS change is under this (token units; anchoring.keep_small_changes; 0: off): one
    # window 1.172 against 1.217 without (repeating the bar: 1.230). Also on windows continuing
    # the model's own output (tried with the mean change), a jam became a loop of the track
    # (loudness within 0.1 dB of it) and missed the grid in more blocks.
    change_gate: float = anchoring.CHANGE_GATE
    guidance: float = 1.0           # classifier-free guidance on the context (1 = off)
    decoder_iterations: int = 8     # Griffin-Lim iterations (12 measured the same with the anchors)
    anchor: bool = True             # hold level, spectrum, high band and stereo to the reference


@dataclass
class _Plan:
    """A request translated to model time."""
    context: np.ndarray
    context_phase: np.ndarray
    prior: np.ndarray
    phase: np.ndarray
    cond: np.ndarray
    model_samples: int
    context_audio: np.ndarray      # model-rate mono end of the context, for a seamless decoder start
    prior_stft_phase: np.ndarray   # STFT phase under the prior tokens, to start the decoder from
    reference: np.ndarray | None   # tokens whose band levels the output keeps (None: no anchoring)
    source_bar: np.ndarray | None  # host-rate bar of the track that gives the high band and the side
    reference_bar: np.ndarray | None   # model-rate mono of that bar: the spectrum the output keeps
    continues_reference: bool      # the prior is the host's newest bar (not the phrase bar) and is the reference
    heard: bool                    # the prior is the track's own bar (live, or the context is the input)
    phrase_lead: bool              # the prior is the track's bar one phrase back (phrase_back)


def _mid(audio: np.ndarray) -> np.ndarray:
    return audio.mean(axis=0, keepdims=True) if audio.shape[1] else np.zeros((1, 0), np.float32)


def _to_model_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.nan_to_num(rep.resample(_mid(np.asarray(audio, np.float32)), sample_rate, rep.SAMPLE_RATE)[0])


def live_input(request: WindowRequest) -> np.ndarray | None:
    """The request's track alone (`input_context`) when its newest bar has sound, else None."""
    audio = np.asarray(request.input_context, np.float32)
    if audio.ndim != 2 or not audio.shape[1]:
        return None
    newest = audio[:, -bar_frames(request):]
    return audio if anchoring.sounds(newest) else None


def phrase_back(request: WindowRequest, track: np.ndarray) -> np.ndarray:
    """The track alone (ending at the horizon) cut after its bar at the window's place one
    phrase back, when that bar is in it and has sound: music repeats by phrases (a 4-chord
    progression plays the window's chord again 4 bars back, not 2), so that bar, not the
    newest, is what the window continues. Else the track as it is. Where that bar is a break
    the track has come back from (BREAK_DB under its newest bar) and the bar a phrase before it
    is not, that one: a one-bar break is a moment of the track, not every phrase (a 7/8 song's
    break, continued a phrase later, came out 1.89 from the song's bar there; its bar two
    phrases back is 0.97). A fade is no break: its newest bar is as quiet."""
    bar = bar_frames(request)
    n_bars = round(track.shape[1] / bar)
    back = (-1 - request.input_gap_bars) % rep.PHRASE_BARS       # bars between the newest and that bar
    if back == 0 or back >= n_bars:
        return track
    cut = track[:, : track.shape[1] - back * bar]
    if not anchoring.sounds(cut[:, -bar:]):
        return track
    loudness = anchoring.bar_rms(track, bar)
    floor = loudness[-1] * 10 ** (-BREAK_DB / 20)
    place, before = n_bars - 1 - back, n_bars - 1 - back - rep.PHRASE_BARS
    if loudness[place] < floor and before >= 0 and loudness[before] >= floor:
        return cut[:, : cut.shape[1] - rep.PHRASE_BARS * bar]
    return cut


def memory_place(request: WindowRequest, memory: np.ndarray) -> int | None:
    """Index (oldest first) of the bar of `memory` (the request's track_memory) at the window's
    place in the phrase (the newest one a whole number of phrases before it) - the memory's
    loudest bar where that bar is a break (BREAK_DB under it) - or None when the request does
    not say where its memory bars were or none is at that place. A free-running jam held bar by
    bar to the track's phrase keeps the phrase's spectrum and level on average; held to one bar
    of it, every bar got that bar's brightness (the 85 % rolloff of single bars of a song
    differs up to fivefold)."""
    bars, loudness = request.track_memory_bars, anchoring.bar_rms(memory, bar_frames(request))
    if bars is None or len(bars) != len(loudness):
        return None
    same = [i for i, b in enumerate(bars) if (request.bar_index - b) % rep.PHRASE_BARS == 0]
    if not same:
        return None
    return same[-1] if loudness[same[-1]] >= loudness.max() * 10 ** (-BREAK_DB / 20) else int(np.argmax(loudness))


def _along(n_prior: int, n_target: int, bar_len: int) -> np.ndarray:
    """[n_target] prior token of each target token: the prior's bars in turn, then its last bar
    over and over (a window longer than what was heard continues its newest bar)."""
    t = np.arange(n_target)
    return np.where(t < n_prior, t, n_prior - bar_len + t % bar_len)


def _bars(mono: np.ndarray, tempo_bpm: float, bar_len: int, n_bars: int) -> tuple[np.ndarray, np.ndarray]:
    """(spectra, tokens) of the last n_bars bars of model-rate audio ending on a bar line."""
    n = n_bars * bar_len
    spectra = rep.spectra(mono, tempo_bpm, len(mono) - n * rep.sixteenth_samples(tempo_bpm), n)
    return spectra, rep.tokens_of(spectra, tempo_bpm)


class DiffusionGenerator:
    name = "diffusion"

    def __init__(self, backend, options: SamplingOptions = SamplingOptions()):
        self.backend = backend
        self.options = options
        self._fallback = LoopGenerator()
        self._warned_meters: set[tuple[int, int]] = set()

    # --- request -> model inputs ---------------------------------------------------------
    def _plan(self, request: WindowRequest, phrases: bool = True) -> _Plan:
        """phrases: the track leads from its bar one phrase back (phrase_back); off where the
        request's bars are not the host's (fold_tempo)."""
        rep.check_tempo(request.tempo_bpm)
        tsig = (request.tsig_num, request.tsig_den)
        bar_len = rep.sixteenths_per_bar(*tsig)
        if request.bars < 1 or request.frames < 1 or request.tail_frames < 0 or request.sample_rate < 8000:
            raise ValueError(f"bad window: bars={request.bars}, frames={request.frames}, tail_frames={request.tail_frames}, "
                             f"sample_rate={request.sample_rate}; need bars >= 1, frames >= 1, tail_frames >= 0, "
                             "sample_rate >= 8000")
        context = np.asarray(request.context, np.float32)
        if context.ndim != 2:
            raise ValueError(f"context must be float32 [channels, samples], got shape {context.shape}")
        sixteenth = rep.sixteenth_samples(request.tempo_bpm)
        # the last context_bars bars (as many as the model reads); what was not heard is silence
        n_bars = rep.context_bars_for(tsig, request.context_bars)
        mono = _to_model_rate(context, request.sample_rate)
        context_spectra, context_tokens = _bars(mono, request.tempo_bpm, bar_len, n_bars)
        needed = request.frames + request.tail_frames
        model_samples = int(np.ceil(needed * rep.SAMPLE_RATE / request.sample_rate)) + 64  # resampler margin
        n_target = max(request.bars * bar_len + 1, int(np.ceil(model_samples / sixteenth)) + 1)
        context_phase, prior, phase = rep.outpainting_inputs(context_tokens, tsig, request.bar_index, n_target)
        prior_back = 1 + request.input_gap_bars     # bars from the prior's bar to the window's
        lead = live = live_input(request) if self.options.anchor and request.input_context is not request.context else None
        if lead is not None:  # the track leads: its bar one phrase back (else its newest) is the prior
            track, bar = lead, bar_frames(request)
            lead = phrase_back(request, track) if phrases else track
            prior_back += round((track.shape[1] - lead.shape[1]) / bar)
            ahead = track[:, lead.shape[1]: lead.shape[1] + (request.bars - 1) * bar]  # for the window's next bars
            lead = lead[:, -n_bars * bar:]      # the bars read (the rest was only searched)
            heard_mono = _to_model_rate(np.concatenate([lead, ahead], axis=1), request.sample_rate)
            lead_mono = heard_mono[: len(heard_mono) - int(round(ahead.shape[1] * rep.SAMPLE_RATE / request.sample_rate))]
            lead_spectra, lead_tokens = _bars(lead_mono, request.tempo_bpm, bar_len, n_bars)
            prior_spectra, prior_tokens = lead_spectra[-bar_len:], lead_tokens[-bar_len:]
            if ahead.shape[1]:  # each bar of a longer window continues the bar after, as far as it was heard
                prior_spectra, prior_tokens = _bars(heard_mono, request.tempo_bpm, bar_len,
                                                    1 + round(ahead.shape[1] / bar))
        else:
            lead, lead_mono, lead_spectra, lead_tokens = context, mono, context_spectra, context_tokens
            prior_spectra, prior_tokens = lead_spectra[-bar_len:], context_tokens[-bar_len:]
        along = _along(len(prior_tokens), n_target, bar_len)
        prior = prior_tokens[along]
        cond = rep.condition_vector(request.style, request.tempo_bpm, tsig)
        prior_stft_phase = np.angle(prior_spectra)[along]
        # what the output is held to: the track when it plays, else the track as it last sounded
        # (held to its own output, each window hands the next a little less groove: 20-30 dB less
        # rhythmic contrast after 64 bars, a wash), else the context
        memory = None if request.track_memory is None else np.asarray(request.track_memory, np.float32)
        if self.options.anchor and live is None and memory is not None and memory.ndim == 2 and memory.shape[1]:
            anchor_audio = memory
            anchor_mono = _to_model_rate(anchor_audio, request.sample_rate)
            memory_bars = max(1, int(round(anchor_audio.shape[1] / bar_frames(request))))
            place = memory_place(request, anchor_audio) if phrases else None
            if place is None:      # without the phrase, the bars the model reads
                memory_bars = min(n_bars, memory_bars)
            anchor_spectra, anchor_tokens = _bars(anchor_mono, request.tempo_bpm, bar_len, memory_bars)
            if request.bar_index % RESEED_BARS == 0:  # a phrase starts again from the track's newest bar
                along = _along(bar_len, n_target, bar_len)
                prior = anchor_tokens[-bar_len:][along]
                prior_stft_phase = np.angle(anchor_spectra[-bar_len:])[along]
        else:
            anchor_audio, anchor_mono, anchor_tokens, memory_bars, place = lead, lead_mono, lead_tokens, n_bars, None
        # the track now (or the context) is followed from its newest sounding bar: a fade or a drop
        # in it is what the output should do; the memory of a track that stopped is held bar by bar
        # to its phrase (memory_place), else as a whole, and its loudest bar gives the spectrum
        # (one quiet last bar is not the track)
        newest = anchor_audio is not memory
        source_bar = None
        reference, reference_bar = None, None
        if self.options.anchor:  # the sounding bars among the anchor's: what the output's level is held to
            sounding = anchoring.sounding_bars(anchor_mono, bar_len * sixteenth)[-memory_bars:]
            sounding = np.concatenate([np.zeros(memory_bars - len(sounding), bool), sounding])
            if place is not None and sounding[place]:
                sounding = np.arange(memory_bars) == place
            elif newest and sounding.any():
                sounding = np.arange(memory_bars) == np.flatnonzero(sounding)[-1]
            reference = anchor_tokens.reshape(memory_bars, bar_len, *anchor_tokens.shape[1:])[sounding].reshape(
                -1, *anchor_tokens.shape[1:]) if sounding.any() else None
            bar16 = anchoring.anchor_bar(anchor_mono, int(round(bar_len * sixteenth)), newest, place)
            reference_bar = None if bar16 is None else bar16[0]
            source_bar = anchoring.anchor_bar(np.asarray(anchor_audio, np.float32), bar_frames(request), newest, place)
        # A window whose prior is the host's newest bar, which is not the bar at its own place one
        # phrase back, is expected to change it (the next chord): holding its bands and spectrum
        # to that bar only undoes the change (one window 1.28 held, 1.20 not; repeating the bar
        # 1.23). Held are the windows that continue the phrase bar (live 0.95 held, 1.04 not) and
        # those that continue the model's own output, which drifts.
        heard = live is not None or request.input_context is request.context
        at_phrase = phrases and prior_back % rep.PHRASE_BARS == 0   # folded bars are not the host's
        continues = (heard and not at_phrase and reference is not None
                     and len(reference) == bar_len and np.array_equal(reference, prior[:bar_len]))
        return _Plan(context_tokens, context_phase, prior, phase, cond, model_samples, mono[-rep.N_FFT:],
                     prior_stft_phase, reference, source_bar, reference_bar, continues, heard,
                     live is not None and at_phrase)

    # --- sampling --------------------------------------------------------------------------
    def _sample(self, plan: _Plan, seed: int, steps: int) -> np.ndarray:
        """Encode the context once, then `steps` denoiser calls; returns clean target tokens."""
        context, context_phase, prior, phase, cond = (array[None] for array in (  # the graphs take a batch axis
            plan.context, plan.context_phase, plan.prior, plan.phase, plan.cond))

        def denoiser(context_tokens: np.ndarray, prior_tokens: np.ndarray) -> samplers.Denoiser:
            memory = self.backend.encode(context_tokens, context_phase, cond)  # the context cache
            return lambda x, t: self.backend.denoise(x.astype(np.float32), prior_tokens, phase,
                                                     np.full(1, t, np.float32), memory, cond)

        denoise = denoiser(context, prior)
        if self.options.guidance != 1.0:
            no_context = denoiser(np.full_like(context, rep.SILENCE), np.full_like(prior, rep.SILENCE))
            denoise = samplers.guided(denoise, no_context, self.options.guidance)
        noise = np.random.default_rng(seed).standard_normal(prior.shape, np.float32)
        rho = self.options.rho if plan.heard else self.options.rho_own
        levels = samplers.noise_levels(steps, rho)
        if plan.phrase_lead and self.options.lead_strength < 1:
            levels = levels * self.options.lead_strength
            noise = samplers.noised(prior, noise, self.options.lead_strength)
        return samplers.euler(denoise, noise, levels)[0]

    def _render(self, request: WindowRequest, plan: _Plan, tokens: np.ndarray) -> np.ndarray:
        held = self.options.anchor and not plan.continues_reference
        gate = self.options.change_gate * (1.0 - request.variation)
        if self.options.anchor and plan.heard and gate > 0:
            tokens = anchoring.keep_small_changes(tokens, plan.prior, gate)
        if held:
            tokens = anchoring.match_band_moments(tokens, plan.reference)
        if self.options.anchor:
            tokens = anchoring.grid_gate(tokens)
        audio = rep.decode(tokens, request.tempo_bpm, plan.model_samples, _seed(request.seed),
                           self.options.decoder_iterations, prefix=plan.context_audio, phase=plan.prior_stft_phase)
        if held:
            body = min(len(audio), int(round(request.frames * rep.SAMPLE_RATE / request.sample_rate)))
            audio = anchoring.hold_spectrum(audio, plan.reference_bar, body, rep.SAMPLE_RATE)
        audio = rep.resample(audio[None], rep.SAMPLE_RATE, request.sample_rate)
        needed = request.frames + request.tail_frames
        mid = np.nan_to_num(np.pad(audio, ((0, 0), (0, max(0, needed - audio.shape[1]))))[0, :needed])
        channels = max(1, request.context.shape[0])
        if self.options.anchor:
            frame_seconds = rep.sixteenth_samples(request.tempo_bpm) / rep.FRAMES_PER_TOKEN / rep.SAMPLE_RATE
            bar = plan.source_bar
            if bar is not None and bar.shape[0] != channels:
                bar = np.repeat(_mid(bar), channels, 0)
            out = anchoring.replicate(mid, bar, channels, anchoring.frame_gains(tokens, plan.prior),
                                      frame_seconds, request.sample_rate, request.frames)
        else:
            out = np.repeat(mid[None], channels, axis=0)
        return limit(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0))

    def generate(self, request: WindowRequest) -> np.ndarray:
        folded = fold_tempo(request)
        if not rep.meter_supported(folded.tsig_num, folded.tsig_den):
            return self._loop_instead(folded)
        plan = self._plan(folded, phrases=folded is request)
        return self._render(folded, plan, self._sample(plan, _seed(folded.seed), folded.steps or self.options.steps))

    def _loop_instead(self, request: WindowRequest) -> np.ndarray:
        """A meter the model cannot play (bars that are not whole 16ths, or longer than 64 of them)
        is served by the loop generator, with one log line per meter: music, never silence."""
        meter = (request.tsig_num, request.tsig_den)
        if meter not in self._warned_meters:
            self._warned_meters.add(meter)
            log.warning("time signature %d/%d is outside the model's meters (N/1 to N/16, at most %d 16ths per bar): "
                        "repeating the last bar of the context instead", *meter, rep.MAX_BAR_SIXTEENTHS)
        return limit(self._fallback.generate(request))

    def generate_batch(self, requests: list[WindowRequest]) -> list[np.ndarray]:
        """One request at a time: a batched forward pass would round differently, and the same
        request must give bit-identical audio however the scheduler groups windows."""
        return [self.generate(r) for r in requests]


def fold_tempo(request: WindowRequest) -> WindowRequest:
    """The plugin's tempos outside the model's 60-200 BPM, in double or half time: 45 BPM is
    generated as 90 BPM with twice the bars, 250 BPM as 125 BPM with half the bars (rounded up).
    The window keeps its samples, so it still starts and ends on the host's bar lines."""
    tempo = request.tempo_bpm
    if not (math.isfinite(tempo) and tempo > 0):
        raise ValueError(f"tempo {tempo} BPM cannot be generated; allowed: any finite tempo above 0 BPM "
                         f"({rep.TEMPO_MIN:g}-{rep.TEMPO_MAX:g} natively, others in double or half time)")
    factor = 1.0
    while tempo * factor < rep.TEMPO_MIN:
        factor *= 2
    while tempo * factor > rep.TEMPO_MAX:
        factor /= 2
    if factor == 1.0:
        return request
    return replace(request, tempo_bpm=tempo * factor, bars=max(1, math.ceil(request.bars * factor)),
                   context_bars=max(1, math.ceil(request.context_bars * factor)),
                   bar_index=int(request.bar_index * factor))


def _seed(seed: int) -> int:
    return int(seed) & 0xFFFF_FFFF_FFFF_FFFF


def onnx_available(weights_dir: Path = WEIGHTS_DIR) -> bool:
    return (importlib.util.find_spec("onnxruntime") is not None
            and (weights_dir / ENCODER_FILE).is_file() and (weights_dir / DENOISER_FILE).is_file())


def load_builtin(backend: str = "auto", weights_dir: Path | None = None, options: SamplingOptions = SamplingOptions(),
                 threads: int = 2) -> DiffusionGenerator:
    """The shipped model. backend: 'auto' (ONNX Runtime when importable and exported, else torch),
    'onnx' or 'torch'. weights_dir holds livediff.npz and/or the two .onnx graphs."""
    weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "onnx" if onnx_available(weights_dir) else "torch"
    if backend == "onnx":
        from engine.backends.onnx_backend import OnnxBackend
        return DiffusionGenerator(OnnxBackend(weights_dir, threads), options)
    from engine.backends.torch_backend import TorchBackend
    return DiffusionGenerator(TorchBackend(weights_dir / WEIGHTS_FILE, threads), options)
