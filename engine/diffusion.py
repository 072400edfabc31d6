"""The built-in diffusion generator: a WindowRequest in, host-rate audio out.

Per window: mix the context to mono, resample it to the model rate (pedalboard), encode
the last bars into beat-synchronous tokens, run the context encoder once, denoise the
target tokens in a few steps, decode with Griffin-Lim at the host tempo, resample to the
host rate, limit to <= 0 dBFS, and copy the mono result to every host channel.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine import representation as rep
from engine import samplers
from engine.backends import DENOISER_FILE, ENCODER_FILE, WEIGHTS_DIR, WEIGHTS_FILE
from engine.dsp import limit
from engine.generator import WindowRequest

BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 2
    guidance: float = 1.0           # classifier-free guidance on the context (1 = off)
    decoder_iterations: int = 12    # Griffin-Lim iterations


@dataclass
class _Plan:
    """A request translated to model time."""
    context: np.ndarray
    context_phase: np.ndarray
    prior: np.ndarray
    phase: np.ndarray
    cond: np.ndarray
    model_samples: int
    context_audio: np.ndarray      # model-rate mono context, for a seamless decoder start
    prior_stft_phase: np.ndarray   # STFT phase under the prior tokens, to start the decoder from


class DiffusionGenerator:
    name = "diffusion"

    def __init__(self, backend, options: SamplingOptions = SamplingOptions()):
        self.backend = backend
        self.options = options

    # --- request -> model inputs ---------------------------------------------------------
    def _plan(self, request: WindowRequest) -> _Plan:
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
        # always the model's 2 bars: older context is ignored, a shorter one is padded with silence
        n_context = rep.CONTEXT_BARS * bar_len
        mono = context.mean(axis=0, keepdims=True) if context.shape[1] else np.zeros((1, 0), np.float32)
        mono = np.nan_to_num(rep.resample(mono, request.sample_rate, rep.SAMPLE_RATE)[0])
        context_spectra = rep.spectra(mono, request.tempo_bpm, len(mono) - n_context * sixteenth, n_context)
        context_tokens = rep.tokens_of(context_spectra, request.tempo_bpm)
        needed = request.frames + request.tail_frames
        model_samples = int(np.ceil(needed * rep.SAMPLE_RATE / request.sample_rate)) + 64  # resampler margin
        n_target = max(request.bars * bar_len + 1, int(np.ceil(model_samples / sixteenth)) + 1)
        context_phase, prior, phase = rep.outpainting_inputs(context_tokens, tsig, request.bar_index, n_target)
        cond = rep.condition_vector(request.style, request.tempo_bpm, tsig)
        prior_stft_phase = np.angle(context_spectra[-bar_len:])[np.arange(n_target) % bar_len]
        return _Plan(context_tokens, context_phase, prior, phase, cond, model_samples, mono[-rep.N_FFT:],
                     prior_stft_phase)

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
        return samplers.euler(denoise, noise, samplers.noise_levels(steps))[0]

    def _render(self, request: WindowRequest, plan: _Plan, tokens: np.ndarray) -> np.ndarray:
        audio = rep.decode(tokens, request.tempo_bpm, plan.model_samples, _seed(request.seed),
                           self.options.decoder_iterations, prefix=plan.context_audio, phase=plan.prior_stft_phase)
        audio = rep.resample(audio[None], rep.SAMPLE_RATE, request.sample_rate)
        needed = request.frames + request.tail_frames
        audio = np.pad(audio, ((0, 0), (0, max(0, needed - audio.shape[1]))))[:, :needed]
        mono = limit(np.nan_to_num(audio[0], nan=0.0, posinf=0.0, neginf=0.0))
        return np.repeat(mono[None], max(1, request.context.shape[0]), axis=0)

    def generate(self, request: WindowRequest) -> np.ndarray:
        request = fold_tempo(request)
        plan = self._plan(request)
        return self._render(request, plan, self._sample(plan, _seed(request.seed), request.steps or self.options.steps))

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
