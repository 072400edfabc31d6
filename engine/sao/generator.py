"""The "sao_small" generator: Stable Audio Open Small (or an LMDM fine-tune) continuing the
session's context on the host's bar grid.

Per window:
1. The context (the scheduler's bars, already at the window's tempo) is resampled to the model
   rate with pedalboard, cut so that it ends exactly on the window's first bar line and spans
   whole latent frames (at most config.context_frames, ~9.7 s for SAO-Small), and encoded once.
2. Target latents cover the window, its seam tail and a margin: a latent frame is 2048 samples
   (46.4 ms at 44.1 kHz), so bar lines fall inside frames. They are generated in passes of at most
   config.chunk_frames frames, each continuing the latents before it (context + target within
   the model's training length).
   - SAO-Small outpaints: the context frames are re-noised to each step's level ("renoise") or
     kept clean ("prefix") in the model input, the target is denoised.
   - LMDM fine-tunes get the clean context (and the accompaniment) as additive inputs; their
     context keys/values are computed once per pass and reused by every step (KV cache).
   8 steps on the log-SNR schedule over [-6, 2], ping-pong for rf_denoiser, Euler for
   rectified_flow.
3. The latents are decoded with a few context frames of lead-in, the audio from the bar line on
   is resampled to the host rate and cut to exactly frames + tail_frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine import samplers
from engine.dsp import limit, resample
from engine.generator import WindowRequest
from engine.sao.config import SaoConfig
from engine.sao.prompts import PromptBank

SAMPLERS = ("auto", "pingpong", "euler")
CONTEXT_MODES = ("renoise", "prefix")
RESAMPLER_GUARD = 64     # model-rate samples kept before the bar line so the resampler starts settled


class Backend(Protocol):
    """What the generator needs from torch or ONNX Runtime (batch of one, float32 numpy)."""

    def encode(self, audio: np.ndarray) -> np.ndarray: ...          # [1, ch, n * ratio] -> [1, latent, n]
    def decode(self, latents: np.ndarray) -> np.ndarray: ...        # [1, latent, n] -> [1, ch, n * ratio]
    def velocity(self, x: np.ndarray, t: np.ndarray, prompt: np.ndarray | None,
                 seconds: np.ndarray) -> np.ndarray: ...            # full sequence, no input_add
    def context_kv(self, input_add: np.ndarray, prompt: np.ndarray | None, seconds: np.ndarray) -> np.ndarray: ...
    def velocity_cached(self, x: np.ndarray, t: np.ndarray, prompt: np.ndarray | None, seconds: np.ndarray,
                        input_add: np.ndarray, cache: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SaoOptions:
    steps: int = 8
    sampler: str = "auto"            # auto: ping-pong for rf_denoiser, Euler for rectified_flow
    context_mode: str = "renoise"    # SAO-Small outpainting (LMDM models always get a clean context)
    lead_frames: int = 8             # context frames decoded before the bar line (decoder warm-up)
    margin_frames: int = 1           # target frames past the window + tail

    def __post_init__(self):
        if self.steps < 1 or self.sampler not in SAMPLERS or self.context_mode not in CONTEXT_MODES \
                or self.lead_frames < 0 or self.margin_frames < 0:
            raise ValueError(f"bad SAO options {self}; need steps >= 1, sampler in {SAMPLERS}, context_mode in "
                             f"{CONTEXT_MODES}, lead_frames >= 0, margin_frames >= 0")


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    return np.repeat(audio.mean(axis=0, keepdims=True), channels, axis=0)


def host_window(audio: np.ndarray, bar_line: int, model_rate: int, host_rate: int, frames: int) -> np.ndarray:
    """`frames` host-rate samples of model-rate `audio` from its sample `bar_line` on. The cut
    before resampling keeps a guard of whole resampling periods (model and host samples that map
    onto each other exactly), so host sample 0 is the bar line to the sample and the resampler's
    filter has settled there."""
    g = math.gcd(model_rate, host_rate)
    unit_model, unit_host = model_rate // g, host_rate // g
    units = min(math.ceil(RESAMPLER_GUARD / unit_model), bar_line // unit_model)
    out = resample(audio[:, bar_line - units * unit_model:], model_rate, host_rate)[:, units * unit_host:][:, :frames]
    return np.pad(out, ((0, 0), (0, frames - out.shape[1])))


class SaoGenerator:
    name = "sao_small"

    def __init__(self, backend: Backend, config: SaoConfig, prompts: PromptBank, style_prompts: dict[int, str],
                 options: SaoOptions = SaoOptions()):
        self.backend, self.cfg, self.prompts, self.style_prompts, self.options = (
            backend, config, prompts, style_prompts, options)
        sampler = options.sampler if options.sampler != "auto" else (
            "pingpong" if config.objective == "rf_denoiser" else "euler")
        self.sampler = sampler

    # --- one pass: target latents after a context ------------------------------------------
    def _solve(self, velocity, noise: np.ndarray, rng: np.random.Generator, with_context,
               levels: np.ndarray) -> np.ndarray:
        def denoise(x: np.ndarray, t: float) -> np.ndarray:
            x = with_context(x, t)
            return x - t * velocity(x, np.full(1, t, np.float32))
        if self.sampler == "pingpong":
            return samplers.pingpong(denoise, noise, levels, rng)
        return samplers.euler(denoise, noise, levels)

    def _pass(self, context: np.ndarray, heard: int, frames: int, prompt: np.ndarray | None,
              accompaniment: tuple[np.ndarray, np.ndarray] | None, rng: np.random.Generator,
              levels: np.ndarray) -> np.ndarray:
        """`frames` new latent frames after `context` [1, latent, C], whose last `heard` frames
        hold real audio (the rest is left padding); accompaniment: (mask, latents) over C + frames."""
        cfg, latent = self.cfg, context.shape[1]
        n_context = context.shape[2]
        seconds = np.full(1, (n_context + frames) * cfg.frame_seconds, np.float32)
        if not cfg.lmdm:
            noise = rng.standard_normal((1, latent, n_context + frames), np.float32)

            def with_context(x: np.ndarray, t: float) -> np.ndarray:
                x = x.copy()
                level = t if self.options.context_mode == "renoise" else 0.0
                x[..., :n_context] = (1 - level) * context + level * rng.standard_normal(context.shape, np.float32)
                return x
            velocity = lambda x, t: self.backend.velocity(x, t, prompt, seconds)  # noqa: E731
            return self._solve(velocity, noise, rng, with_context, levels)[..., n_context:]
        known = np.zeros((1, 1, n_context + frames), np.float32)
        known[..., n_context - heard:n_context] = 1.0
        sequence = np.concatenate([context, np.zeros((1, latent, frames), np.float32)], axis=2)
        parts = [known, sequence * known]
        if accompaniment is not None:
            present, accomp = accompaniment
            parts += [present, accomp * present]
        input_add = np.concatenate(parts, axis=1)
        cache = self.backend.context_kv(input_add[..., :n_context], prompt, seconds)
        target_add = input_add[..., n_context:]
        velocity = lambda x, t: self.backend.velocity_cached(x, t, prompt, seconds, target_add, cache)  # noqa: E731
        noise = rng.standard_normal((1, latent, frames), np.float32)
        return self._solve(velocity, noise, rng, lambda x, t: x, levels)

    # --- a window --------------------------------------------------------------------------
    def _model_audio(self, audio: np.ndarray, host_rate: int) -> np.ndarray:
        audio = np.nan_to_num(np.asarray(audio, np.float32))
        return resample(to_channels(audio, self.cfg.audio_channels), host_rate, self.cfg.sample_rate)

    def _accompaniment(self, request: WindowRequest) -> tuple[np.ndarray, np.ndarray]:
        """(mask, latents) of the accompaniment over the context_frames before the window: the
        input heard up to the horizon, placed input_gap_bars before the window start, encoded
        once; frames not entirely covered by heard input have mask 0 (the latency horizon)."""
        cfg, ratio = self.cfg, self.cfg.downsampling_ratio
        n = cfg.context_frames
        mask = np.zeros((1, 1, n), np.float32)
        audio = np.zeros((cfg.audio_channels, n * ratio), np.float32)
        bar_seconds = request.frames / max(1, request.bars) / request.sample_rate
        end = n * ratio - round(request.input_gap_bars * bar_seconds * cfg.sample_rate)
        if end > 0 and request.input_context.size:
            heard = self._model_audio(request.input_context, request.sample_rate)[:, -end:]
            audio[:, end - heard.shape[1]:end] = heard
            mask[..., math.ceil((end - heard.shape[1]) / ratio):end // ratio] = 1.0
        return mask, self.backend.encode(audio[None])

    def _accompaniment_pass(self, accompaniment: tuple[np.ndarray, np.ndarray] | None, made: int,
                            frames: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The accompaniment under a pass that starts `made` frames after the window start,
        silent from the trained cutoff on."""
        if accompaniment is None:
            return None
        n = self.cfg.context_frames
        mask, latents = (np.pad(a[..., made:], ((0, 0), (0, 0), (0, min(made, n) + frames))) for a in accompaniment)
        mask[..., self.cfg.accomp_cutoff:] = 0.0
        return mask, latents

    def generate(self, request: WindowRequest) -> np.ndarray:
        cfg, opts = self.cfg, self.options
        if request.frames < 1 or request.tail_frames < 0 or request.sample_rate < 8000 or request.context.ndim != 2:
            raise ValueError(f"bad window: frames={request.frames}, tail_frames={request.tail_frames}, "
                             f"sample_rate={request.sample_rate}, context shape {request.context.shape}; need "
                             f"frames >= 1, tail_frames >= 0, sample_rate >= 8000, context [channels, samples]")
        ratio, rate = cfg.downsampling_ratio, cfg.sample_rate
        rng = np.random.default_rng(int(request.seed) & 0xFFFF_FFFF_FFFF_FFFF)
        levels = samplers.log_snr_levels(request.steps or opts.steps)     # a preset's steps win
        context_audio = self._model_audio(request.context, request.sample_rate)
        heard = min(cfg.context_frames, context_audio.shape[1] // ratio)
        if heard:
            context = self.backend.encode(context_audio[None, :, context_audio.shape[1] - heard * ratio:])
        else:
            context = np.zeros((1, cfg.decoder.latent_dim, 0), np.float32)
        prompt = None
        if cfg.prompt_id is not None:
            prompt = self.prompts.embedding(self.style_prompts.get(request.style, ""))[None]

        needed = request.frames + request.tail_frames
        target = math.ceil(needed * rate / request.sample_rate / ratio) + opts.margin_frames
        accompaniment = self._accompaniment(request) if cfg.accompaniment else None
        latents, made = context, 0
        while made < target:
            if cfg.lmdm:                 # the pass geometry it was trained on; the context left-padded
                n_context, frames = cfg.context_frames, cfg.chunk_frames
                window = latents[..., -n_context:]
                heard_now = window.shape[2]
                window = np.pad(window, ((0, 0), (0, 0), (n_context - heard_now, 0)))
            else:
                window = latents[..., latents.shape[2] - min(cfg.context_frames, latents.shape[2]):]
                n_context = heard_now = window.shape[2]
                frames = min(target - made, cfg.max_frames - n_context)
            new = self._pass(window, heard_now, frames, prompt, self._accompaniment_pass(accompaniment, made, frames),
                             rng, levels)
            latents = np.concatenate([latents, new], axis=2)
            made += frames

        lead = min(opts.lead_frames, heard)
        audio = host_window(self.backend.decode(latents[..., heard - lead:])[0], lead * ratio, rate,
                            request.sample_rate, needed)
        audio = to_channels(np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0), request.context.shape[0])
        return limit(audio)

    def generate_batch(self, requests: list[WindowRequest]) -> list[np.ndarray]:
        return [self.generate(r) for r in requests]
