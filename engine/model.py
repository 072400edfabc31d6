"""The built-in model: a small encoder-decoder transformer for block-wise outpainting.

Tokens are 16th notes of log-magnitude spectra (engine/representation.py). The *context
encoder* turns the clean context tokens into a memory once per window; the *denoiser*
reads noisy target tokens and cross-attends to that memory at every sampling step, so the
context is never recomputed (the LMDM cache, as two separate graphs).

Each target token also receives the token at the same position of the last context bar
(the "previous bar" prior) and predicts the clean token as prior + correction, so copying
the groove is the easy default and the network learns the bar-to-bar changes.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.representation import CONDITION_FEATURES, FRAMES_PER_TOKEN, N_BINS, PHASE_FEATURES


@dataclass(frozen=True)
class ModelConfig:
    n_bins: int = N_BINS
    frames_per_token: int = FRAMES_PER_TOKEN
    frame_dim: int = 80          # per-frame spectral bottleneck before a token is flattened
    d_model: int = 192
    n_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 4
    ff_mult: int = 3
    n_phase: int = PHASE_FEATURES
    n_cond: int = CONDITION_FEATURES


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.query = nn.Linear(cfg.d_model, cfg.d_model)
        self.key_value = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        heads = lambda t: t.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)  # noqa: E731
        q = heads(self.query(x))
        k, v = (heads(t) for t in self.key_value(source).chunk(2, dim=-1))
        weights = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).flatten(-2))


class Block(nn.Module):
    """Pre-norm transformer block; with `cross`, it also attends to the context memory."""

    def __init__(self, cfg: ModelConfig, cross: bool):
        super().__init__()
        self.norm_self = nn.LayerNorm(cfg.d_model)
        self.self_attention = Attention(cfg)
        self.norm_cross = nn.LayerNorm(cfg.d_model) if cross else None
        self.cross_attention = Attention(cfg) if cross else None
        self.norm_ff = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.ff_mult * cfg.d_model), nn.GELU(),
                                nn.Linear(cfg.ff_mult * cfg.d_model, cfg.d_model))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_self(x)
        x = x + self.self_attention(h, h)
        if self.cross_attention is not None:
            x = x + self.cross_attention(self.norm_cross(x), memory)
        return x + self.ff(self.norm_ff(x))


class TokenIn(nn.Module):
    """[B, N, frames, bins] -> [B, N, d_model]: a shared per-frame projection, then per token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.frame = nn.Linear(cfg.n_bins, cfg.frame_dim)
        self.token = nn.Linear(cfg.frames_per_token * cfg.frame_dim, cfg.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        frames = F.gelu(self.frame(tokens))
        return self.token(frames.flatten(-2))


class TokenOut(nn.Module):
    """[B, N, d_model] -> [B, N, frames, bins], the inverse shape of TokenIn; starts at zero."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.token = nn.Linear(cfg.d_model, cfg.frames_per_token * cfg.frame_dim)
        self.frame = nn.Linear(cfg.frame_dim, cfg.n_bins)
        nn.init.zeros_(self.frame.weight)
        nn.init.zeros_(self.frame.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        frames = F.gelu(self.token(h)).unflatten(-1, (self.cfg.frames_per_token, self.cfg.frame_dim))
        return self.frame(frames)


def noise_level_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the noise level t in [0, 1], [B] -> [B, dim]."""
    freqs = torch.exp(torch.arange(dim // 2, dtype=torch.float32) * (-math.log(1000.0) / (dim // 2)))
    angles = 1000.0 * t[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class LiveDiffusion(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.context_in = TokenIn(cfg)
        self.target_in = TokenIn(cfg)
        self.prior_in = TokenIn(cfg)
        self.phase_in = nn.Linear(cfg.n_phase, d)
        self.cond_in = nn.Linear(cfg.n_cond, d)
        self.time_in = nn.Sequential(nn.Linear(64, d), nn.SiLU(), nn.Linear(d, d))
        self.encoder = nn.ModuleList(Block(cfg, cross=False) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.decoder_layers))
        self.norm_memory = nn.LayerNorm(d)
        self.norm_out = nn.LayerNorm(d)
        self.out = TokenOut(cfg)

    def encode(self, context: torch.Tensor, context_phase: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Clean context tokens [B, M, frames, bins] -> memory [B, M, d_model]; once per window."""
        h = self.context_in(context) + self.phase_in(context_phase) + self.cond_in(cond)[:, None]
        for block in self.encoder:
            h = block(h)
        return self.norm_memory(h)

    def denoise(self, noisy: torch.Tensor, prior: torch.Tensor, phase: torch.Tensor, t: torch.Tensor,
                memory: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noisy target tokens at level t -> predicted clean tokens (prior + correction)."""
        global_cond = self.cond_in(cond) + self.time_in(noise_level_embedding(t, 64))
        h = self.target_in(noisy) + self.prior_in(prior) + self.phase_in(phase) + global_cond[:, None]
        for block in self.decoder:
            h = block(h, memory)
        return prior + self.out(self.norm_out(h))


# --- weights files -------------------------------------------------------------------------
# A weights file is a plain .npz (no pickle): every parameter as a float16 array, plus
# "__config__", the ModelConfig as UTF-8 JSON bytes.

CONFIG_KEY = "__config__"


def save_weights(model: LiveDiffusion, path: Path) -> None:
    """Atomic write of the model as float16 arrays + config."""
    path = Path(path)
    arrays = {name: t.detach().cpu().numpy().astype(np.float16) for name, t in model.state_dict().items()}
    arrays[CONFIG_KEY] = np.frombuffer(json.dumps(asdict(model.cfg)).encode(), np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load_weights(path: Path) -> LiveDiffusion:
    """A model from a weights file, with errors that say what the file should be."""
    path = Path(path)
    expected = "an .npz written by `livediff train` (float16 parameters + __config__)"
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist; expected {expected}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        cfg = ModelConfig(**json.loads(bytes(arrays.pop(CONFIG_KEY)).decode()))
        model = LiveDiffusion(cfg)
        model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()})
    except Exception as err:  # zip, JSON, key and shape errors all mean the same thing to the user
        raise ValueError(f"weights file {path} is corrupt or not a livediff model ({type(err).__name__}: {err}); "
                         f"expected {expected}") from None
    return model.eval()
