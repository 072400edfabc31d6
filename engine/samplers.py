"""Samplers: small pure functions over numpy arrays.

The model is trained on the straight path x_t = (1 - t) * x0 + t * noise and predicts x0.
`denoise(x_t, t) -> x0_hat` is whatever backend is in use, with the context memory already
bound, so a sampler never recomputes the context.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Denoiser = Callable[[np.ndarray, float], np.ndarray]


def noised(x0, noise, t):
    """x_t on the straight path from x0 (t = 0) to noise (t = 1); numpy arrays or torch tensors."""
    return (1.0 - t) * x0 + t * noise


def noise_levels(steps: int, rho: float = 1.0) -> np.ndarray:
    """steps + 1 noise levels from 1 (pure noise) to 0, t_i = (1 - i / steps) ** rho: evenly
    spaced for rho = 1; rho > 1 spends the later steps at low noise (EDM's rho, Karras et al.
    2022), so each refines the previous x0 more gently."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    return (1.0 - np.arange(steps + 1) / steps) ** rho


def euler(denoise: Denoiser, noise: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Deterministic (DDIM-like) sampling: at each level, re-noise the predicted x0 with the
    noise implied by x_t, at the next level. numpy arrays or torch tensors (training's rollouts)."""
    x = noise
    for t, t_next in zip(levels[:-1], levels[1:]):
        x0 = denoise(x, float(t))
        implied_noise = (x - (1.0 - t) * x0) / t
        x = noised(x0, implied_noise, t_next)
    return x0


def guided(conditional: Denoiser, unconditional: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance on the x0 prediction: scale > 1 pushes away from 'no context'."""
    def denoise(x: np.ndarray, t: float) -> np.ndarray:
        x0 = conditional(x, t)
        if scale == 1.0:
            return x0
        baseline = unconditional(x, t)
        return baseline + scale * (x0 - baseline)
    return denoise


def log_snr_levels(steps: int, low: float = -6.0, high: float = 2.0) -> np.ndarray:
    """steps + 1 noise levels evenly spaced in log-SNR over [low, high] (LMDM's and SAO-Small's
    schedule for few-step sampling), with the ends pinned to 1 and 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    levels = 1.0 / (1.0 + np.exp(np.linspace(low, high, steps + 1)))
    levels[0], levels[-1] = 1.0, 0.0
    return levels


def pingpong(denoise: Denoiser, noise: np.ndarray, levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ping-pong sampling for few-step (adversarially post-trained) models: denoise fully at each
    level, then re-noise the prediction to the next level with fresh noise."""
    x = noise
    for t, t_next in zip(levels[:-1], levels[1:]):
        x0 = denoise(x, float(t))
        x = noised(x0, rng.standard_normal(x.shape, np.float32), t_next)
    return x0
