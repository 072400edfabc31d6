"""Stable Audio Open Small in torch: the Oobleck autoencoder, the number conditioners and the DiT,
built from an engine.sao.config.SaoConfig.

Module names and nesting follow the published checkpoints, so `state_dict()` has their keys:
`pretransform.model.{encoder,decoder}.layers...` (weight-normalised convolutions as weight_g /
weight_v, Snake activations as alpha / beta), `conditioner.conditioners.<id>.embedder...` and
`model.model...` (the DiT). The T5 prompt encoder is not part of a checkpoint (engine/sao/prompts.py).

The DiT's global token (conditioning + timestep) always goes last with RoPE position 0 and the
sequence at positions 1..N: the publisher's prepended token has the same positions, and under
full attention the order of tokens does not matter, so one layout serves both. LMDM fine-tunes
(`postpend`, `input_add_dims`, a context-router attention pattern) get their clean context as an
additive embedding, and their context tokens never attend to the noisy target: their keys and
values are computed once per pass (`context_kv`) and reused by every step (`velocity_cached`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.sao.config import DitConfig, OobleckConfig, SaoConfig

# --- autoencoder ----------------------------------------------------------------------------


class WNConv1d(nn.Module):
    """A weight-normalised (transposed) 1-d convolution: weight = g * v / |v|, the norm taken per
    slice of the first weight axis (torch.nn.utils.weight_norm's dim=0)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int = 0,
                 bias: bool = True, transpose: bool = False):
        super().__init__()
        shape = (cin, cout, kernel) if transpose else (cout, cin, kernel)
        self.weight_v = nn.Parameter(torch.randn(shape) * (1.0 / math.sqrt(cin * kernel)))
        self.weight_g = nn.Parameter(self.weight_v.detach().flatten(1).norm(dim=1).reshape(-1, 1, 1).clone())
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.stride, self.dilation, self.padding, self.transpose = stride, dilation, padding, transpose

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        weight = v * (self.weight_g / v.flatten(1).norm(dim=1).reshape(-1, 1, 1))
        if self.transpose:
            return F.conv_transpose1d(x, weight, self.bias, self.stride, self.padding, dilation=self.dilation)
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation)


class Snake(nn.Module):
    """SnakeBeta with log-scale parameters: x + sin(x * e^alpha)^2 / e^beta."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha.exp()[:, None], self.beta.exp()[:, None]
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


def activation(cfg: OobleckConfig, channels: int) -> nn.Module:
    return Snake(channels) if cfg.use_snake else nn.ELU()


class ResidualUnit(nn.Module):
    def __init__(self, cfg: OobleckConfig, channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(activation(cfg, channels),
                                    WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
                                    activation(cfg, channels), WNConv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class EncoderBlock(nn.Module):
    def __init__(self, cfg: OobleckConfig, cin: int, cout: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(*(ResidualUnit(cfg, cin, d) for d in (1, 3, 9)), activation(cfg, cin),
                                    WNConv1d(cin, cout, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DecoderBlock(nn.Module):
    def __init__(self, cfg: OobleckConfig, cin: int, cout: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(activation(cfg, cin), WNConv1d(cin, cout, 2 * stride, stride=stride,
                                                                   padding=math.ceil(stride / 2), transpose=True),
                                    *(ResidualUnit(cfg, cout, d) for d in (1, 3, 9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Oobleck(nn.Module):
    """The Oobleck encoder (audio -> 2 x latent channels) or decoder (latents -> audio)."""

    def __init__(self, cfg: OobleckConfig, decoder: bool):
        super().__init__()
        widths = [cfg.channels * m for m in (1, *cfg.c_mults)]
        if not decoder:
            layers = [WNConv1d(cfg.audio_channels, widths[0], 7, padding=3)]
            layers += [EncoderBlock(cfg, widths[i], widths[i + 1], s) for i, s in enumerate(cfg.strides)]
            layers += [activation(cfg, widths[-1]), WNConv1d(widths[-1], cfg.latent_dim, 3, padding=1)]
        else:
            layers = [WNConv1d(cfg.latent_dim, widths[-1], 7, padding=3)]
            layers += [DecoderBlock(cfg, widths[i + 1], widths[i], cfg.strides[i])
                       for i in reversed(range(len(cfg.strides)))]
            layers += [activation(cfg, widths[0]), WNConv1d(widths[0], cfg.audio_channels, 7, padding=3, bias=False)]
            if cfg.final_tanh:
                layers.append(nn.Tanh())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Autoencoder(nn.Module):
    """Encoder, VAE bottleneck (no weights) and decoder. Encoding returns the posterior mean, so the
    same context always gives the same latents."""

    def __init__(self, cfg: SaoConfig):
        super().__init__()
        self.encoder = Oobleck(cfg.encoder, decoder=False)
        self.decoder = Oobleck(cfg.decoder, decoder=True)
        self.scale = cfg.vae_scale

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        mean, _scale = self.encoder(audio).chunk(2, dim=1)
        return mean / self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents * self.scale)


# --- conditioners ---------------------------------------------------------------------------


class LearnedFourier(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freqs = x[:, None] * self.weights[None] * (2 * math.pi)
        return torch.cat([x[:, None], freqs.sin(), freqs.cos()], dim=-1)


class NumberConditioner(nn.Module):
    """A number (seconds) clamped to [min, max], scaled to [0, 1], embedded as one cond_dim token."""

    def __init__(self, cond_dim: int, low: float, high: float, fourier_dim: int = 256):
        super().__init__()
        self.low, self.high = low, high
        self.embedder = nn.Module()
        self.embedder.embedding = nn.Sequential(LearnedFourier(fourier_dim), nn.Linear(fourier_dim + 1, cond_dim))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        normalized = (values.clamp(self.low, self.high) - self.low) / (self.high - self.low)
        return self.embedder.embedding(normalized)[:, None]       # [batch, 1, cond_dim]


class Conditioners(nn.Module):
    def __init__(self, cfg: SaoConfig):
        super().__init__()
        self.conditioners = nn.ModuleDict({cid: NumberConditioner(cfg.cond_dim, low, high)
                                           for cid, low, high in cfg.number_conditioners})


# --- DiT ------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """Layer norm with a learned gain and a fixed zero bias (kept as a buffer, as published)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.gamma.shape, self.gamma, self.beta, 1e-5)


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, dim, 2).float() / dim))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        freqs = positions.float()[:, None] * self.inv_freq[None]
        return torch.cat([freqs, freqs], dim=-1)                   # [n, rotary_dim]


def rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """RoPE on the first rotary_dim features of each head (the rest pass through)."""
    n = freqs.shape[-1]
    head, rest = x[..., :n], x[..., n:]
    first, second = head.chunk(2, dim=-1)
    turned = torch.cat([-second, first], dim=-1)
    return torch.cat([head * freqs.cos() + turned * freqs.sin(), rest], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: str, dim_context: int | None = None):
        super().__init__()
        self.heads, self.dim_heads, self.qk_norm = heads, dim // heads, qk_norm
        if dim_context is None:
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        else:
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(dim_context, 2 * dim_context, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        if qk_norm == "ln":
            self.q_norm = nn.LayerNorm(self.dim_heads, eps=1e-6)
            self.k_norm = nn.LayerNorm(self.dim_heads, eps=1e-6)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (-1, self.dim_heads)).transpose(1, 2)      # [b, heads, n, dim_heads]

    def _norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.qk_norm == "ln":
            return self.q_norm(q), self.k_norm(k)
        if self.qk_norm == "l2":
            return F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return q, k

    def self_qkv(self, x: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q, k, v = (self._split(t) for t in self.to_qkv(x).chunk(3, dim=-1))
        q, k = self._norm(q, k)
        return rotate(q, freqs), rotate(k, freqs), v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if k.shape[1] != q.shape[1]:      # fewer key/value heads (an unprojected context)
            k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).flatten(2))

    def cross(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self._split(self.to_q(x))
        k, v = (self._split(t) for t in self.to_kv(context).chunk(2, dim=-1))
        q, k = self._norm(q, k)
        return self.attend(q, k, v)


class GLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.silu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.ff = nn.Sequential(GLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class Block(nn.Module):
    def __init__(self, cfg: DitConfig, cross: bool):
        super().__init__()
        dim = cfg.embed_dim
        self.pre_norm = LayerNorm(dim)
        self.self_attn = Attention(dim, cfg.num_heads, cfg.qk_norm)
        if cross:
            self.cross_attend_norm = LayerNorm(dim)
            self.cross_attn = Attention(dim, cfg.num_heads, cfg.qk_norm, dim_context=dim if cfg.project_cond_tokens
                                        else cfg.cond_token_dim)
        self.ff_norm = LayerNorm(dim)
        self.ff = FeedForward(dim)

    def _rest(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if context is not None and hasattr(self, "cross_attn"):
            x = x + self.cross_attn.cross(self.cross_attend_norm(x), context)
        return x + self.ff(self.ff_norm(x))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, freqs: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x after the block, and this block's self-attention keys and values."""
        q, k, v = self.self_attn.self_qkv(self.pre_norm(x), freqs)
        x = x + self.self_attn.attend(q, k, v, mask)
        return self._rest(x, context), k, v

    def forward_cached(self, x: torch.Tensor, context: torch.Tensor | None, freqs: torch.Tensor,
                       cached_k: torch.Tensor, cached_v: torch.Tensor) -> torch.Tensor:
        """Tokens that attend to cached keys/values (computed without them) and to each other."""
        q, k, v = self.self_attn.self_qkv(self.pre_norm(x), freqs)
        x = x + self.self_attn.attend(q, torch.cat([cached_k, k], dim=2), torch.cat([cached_v, v], dim=2))
        return self._rest(x, context)


class Transformer(nn.Module):
    def __init__(self, cfg: DitConfig):
        super().__init__()
        self.project_in = nn.Linear(cfg.io_channels, cfg.embed_dim, bias=False)
        self.project_out = nn.Linear(cfg.embed_dim, cfg.io_channels, bias=False)
        self.rotary_pos_emb = Rotary(cfg.rotary_dim)
        self.layers = nn.ModuleList(Block(cfg, cross=cfg.cond_token_dim > 0) for _ in range(cfg.depth))


class FourierFeatures(nn.Module):
    def __init__(self, out_features: int = 256):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features // 2, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t[:, None] @ self.weight.T
        return torch.cat([f.cos(), f.sin()], dim=-1)


def mlp(cin: int, cout: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, cout, bias=bias), nn.SiLU(), nn.Linear(cout, cout, bias=bias))


def attention_mask(pattern: str, n: int, context: int, chunk: int, window: int, device=None) -> torch.Tensor | None:
    """Which keys each query may see, for n sequence tokens followed by the global token.
    enc-dec: context tokens see the context only, the rest see everything. block-causal: token
    blocks of `chunk` (the global token in the last) see their own and the window - 1 blocks before."""
    if pattern == "full":
        return None
    index = torch.arange(n + 1, device=device)
    if pattern == "enc-dec":
        return (index[None] < context) | (index[:, None] >= context)
    block = torch.clamp(torch.div(index, chunk, rounding_mode="floor"), max=n // chunk - 1)
    q, k = block[:, None], block[None]
    return (k <= q) & (k >= q - window + 1)


class DiT(nn.Module):
    def __init__(self, cfg: DitConfig):
        super().__init__()
        self.cfg = cfg
        e = cfg.embed_dim
        self.timestep_features = FourierFeatures(256)
        self.to_timestep_embed = mlp(256, e, bias=True)
        if cfg.cond_token_dim:
            self.to_cond_embed = mlp(cfg.cond_token_dim, e if cfg.project_cond_tokens else cfg.cond_token_dim, False)
        if cfg.global_cond_dim:
            self.to_global_embed = mlp(cfg.global_cond_dim, e if cfg.project_global_cond else cfg.global_cond_dim, False)
        if cfg.input_add_dims:
            self.to_input_add_embed = nn.Linear(sum(d for _, d in cfg.input_add_dims), e, bias=False)
        self.transformer = Transformer(cfg)
        self.preprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(cfg.io_channels, cfg.io_channels, 1, bias=False)

    def _inputs(self, x: torch.Tensor | None, input_add: torch.Tensor | None,
                start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence tokens [b, n, e] (x: [b, io, n] noisy latents or None for clean-context tokens)
        and the RoPE frequencies of positions start + 1 .. start + n."""
        tokens = None
        if x is not None:
            tokens = self.transformer.project_in((self.preprocess_conv(x) + x).transpose(1, 2))
        if input_add is not None:
            added = self.to_input_add_embed(input_add.transpose(1, 2))
            tokens = added if tokens is None else tokens + added
        n = tokens.shape[1]
        positions = torch.arange(n, device=tokens.device) + (start + 1)
        return tokens, self.transformer.rotary_pos_emb(positions)

    def _global(self, t: torch.Tensor, global_cond: torch.Tensor | None) -> torch.Tensor:
        embed = self.to_timestep_embed(self.timestep_features(t))
        if global_cond is not None:
            embed = embed + self.to_global_embed(global_cond)
        return embed[:, None]

    def _out(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.transformer.project_out(tokens).transpose(1, 2)
        return self.postprocess_conv(out) + out

    def forward(self, x: torch.Tensor, t: torch.Tensor, cross: torch.Tensor | None, global_cond: torch.Tensor | None,
                input_add: torch.Tensor | None = None, pattern: str = "full", context: int = 0, chunk: int = 1,
                window: int = 1) -> torch.Tensor:
        """The velocity for x [b, io, n] at noise level t [b], over the whole sequence. With a
        context-router pattern, the first `context` frames of x are ignored (their content comes
        from input_add) as in LMDM training."""
        context_tokens = self.to_cond_embed(cross) if cross is not None else None
        if pattern != "full":
            router = (torch.arange(x.shape[2], device=x.device) >= context).to(x.dtype)
            x = x * router
        tokens, freqs = self._inputs(x, input_add, 0)
        n = tokens.shape[1]
        tokens = torch.cat([tokens, self._global(t, global_cond)], dim=1)
        freqs = torch.cat([freqs, self.transformer.rotary_pos_emb(torch.zeros(1, device=x.device))], dim=0)
        mask = attention_mask(pattern, n, context, chunk, window, x.device)
        for layer in self.transformer.layers:
            tokens, _, _ = layer(tokens, context_tokens, freqs, mask)
        return self._out(tokens[:, :n])

    def context_kv(self, input_add: torch.Tensor, cross: torch.Tensor | None, pattern: str, chunk: int = 1,
                   window: int = 1) -> torch.Tensor:
        """Self-attention keys and values of the clean context tokens, [depth, 2, b, heads, n, dim_heads];
        valid for every step because context tokens never attend to the target or the timestep."""
        context_tokens = self.to_cond_embed(cross) if cross is not None else None
        tokens, freqs = self._inputs(None, input_add, 0)
        n = tokens.shape[1]
        mask = None if pattern == "enc-dec" else attention_mask(pattern, n, n, chunk, window, tokens.device)[:n, :n]
        cache = []
        for layer in self.transformer.layers:
            tokens, k, v = layer(tokens, context_tokens, freqs, mask)
            cache.append(torch.stack([k, v]))
        return torch.stack(cache)

    def velocity_cached(self, x: torch.Tensor, t: torch.Tensor, cross: torch.Tensor | None,
                        global_cond: torch.Tensor | None, input_add: torch.Tensor, cache: torch.Tensor,
                        first_visible: int = 0) -> torch.Tensor:
        """The velocity for the target x [b, io, n] after a cached context (context_kv) whose
        frames from `first_visible` on are visible to the target (block-causal drops older ones)."""
        context_tokens = self.to_cond_embed(cross) if cross is not None else None
        tokens, freqs = self._inputs(x, input_add, cache.shape[4])
        n = tokens.shape[1]
        tokens = torch.cat([tokens, self._global(t, global_cond)], dim=1)
        freqs = torch.cat([freqs, self.transformer.rotary_pos_emb(torch.zeros(1, device=x.device))], dim=0)
        for layer, kv in zip(self.transformer.layers, cache):
            tokens = layer.forward_cached(tokens, context_tokens, freqs, kv[0][:, :, first_visible:],
                                          kv[1][:, :, first_visible:])
        return self._out(tokens[:, :n])


# --- the whole model ------------------------------------------------------------------------


class _Holder(nn.Module):
    """The publisher's wrapper levels (`model.model`, `pretransform.model`): names only."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.model = inner


class SaoModel(nn.Module):
    def __init__(self, cfg: SaoConfig):
        super().__init__()
        self.cfg = cfg
        self.model = _Holder(DiT(cfg.dit))
        self.conditioner = Conditioners(cfg)
        self.pretransform = _Holder(Autoencoder(cfg))

    @property
    def dit(self) -> DiT:
        return self.model.model

    @property
    def autoencoder(self) -> Autoencoder:
        return self.pretransform.model

    def condition(self, prompt: torch.Tensor | None, seconds_total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """(cross-attention tokens, global conditioning) from the prompt embedding [b, L, width]
        (None: no prompt conditioner) and seconds_total [b]."""
        numbers = {"seconds_total": seconds_total, "seconds_start": torch.zeros_like(seconds_total)}
        embedded = {cid: module(numbers[cid]) for cid, module in self.conditioner.conditioners.items()}
        if self.cfg.prompt_id is not None:
            embedded[self.cfg.prompt_id] = prompt
        cross = torch.cat([embedded[c] for c in self.cfg.cross_attention_ids], dim=1) \
            if self.cfg.cross_attention_ids else None
        global_cond = torch.cat([embedded[c][:, 0] for c in self.cfg.global_cond_ids], dim=-1) \
            if self.cfg.global_cond_ids else None
        return cross, global_cond

    def parameter_counts(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"dit": count(self.dit), "autoencoder": count(self.autoencoder), "conditioners": count(self.conditioner)}
