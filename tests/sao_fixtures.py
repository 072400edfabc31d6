"""model_config.json dicts for the SAO tests and benchmarks: Stable Audio Open Small's published
sizes, a tiny random model with the same layout and key names, and LMDM variants of both."""
from __future__ import annotations

import copy

import numpy as np

from engine.generator import WindowRequest


def sao_small_config() -> dict:
    """The architecture as published for Stable Audio Open Small (44.1 kHz stereo, 64-channel
    latents at 1/2048 of the rate, DiT 1024 wide x 16 layers x 8 heads, T5-base prompts)."""
    oobleck = {"channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8], "use_snake": True}
    return {
        "model_type": "diffusion_cond", "sample_size": 524288, "sample_rate": 44100, "audio_channels": 2,
        "model": {
            "pretransform": {"type": "autoencoder", "iterate_batch": True, "model_half": True, "config": {
                "encoder": {"type": "oobleck", "requires_grad": False,
                            "config": {"in_channels": 2, "latent_dim": 128, **oobleck}},
                "decoder": {"type": "oobleck",
                            "config": {"out_channels": 2, "latent_dim": 64, "final_tanh": False, **oobleck}},
                "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048, "io_channels": 2}},
            "conditioning": {"configs": [
                {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 64}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}}],
                "cond_dim": 768},
            "diffusion": {"cross_attention_cond_ids": ["prompt", "seconds_total"], "global_cond_ids": ["seconds_total"],
                          "diffusion_objective": "rf_denoiser", "type": "dit",
                          "config": {"io_channels": 64, "embed_dim": 1024, "depth": 16, "num_heads": 8,
                                     "cond_token_dim": 768, "global_cond_dim": 768,
                                     "transformer_type": "continuous_transformer", "attn_kwargs": {"qk_norm": "ln"}}},
            "io_channels": 64},
        "training": {"use_ema": True, "pre_encoded": True},
    }


def tiny_config(**training) -> dict:
    """Same layout and timing (44.1 kHz, 2048 samples per latent frame, 256 frames), small widths:
    4 base channels, 8 latent channels, a 2-layer 64-wide DiT, 512-wide prompt tokens (t5-small)."""
    cfg = sao_small_config()
    pt = cfg["model"]["pretransform"]["config"]
    for part in ("encoder", "decoder"):
        pt[part]["config"]["channels"] = 4
    pt["encoder"]["config"]["latent_dim"] = 16
    pt["decoder"]["config"]["latent_dim"] = 8
    pt["latent_dim"] = 8
    cfg["model"]["io_channels"] = 8
    cond = cfg["model"]["conditioning"]
    cond["cond_dim"] = 512
    cond["configs"][0]["config"].update(t5_model_name="t5-small", max_length=6)
    cfg["model"]["diffusion"]["config"].update(io_channels=8, embed_dim=64, depth=2, num_heads=2,
                                               cond_token_dim=512, global_cond_dim=512)
    if training:
        cfg["training"] = training
    return cfg


def lmdm(cfg: dict, pattern: str, context: int, chunk: int, accompaniment: bool = False) -> dict:
    """An LMDM fine-tune's config: clean context (and accompaniment) as additive inputs, the global
    token last, the context-router attention pattern of its training."""
    cfg = copy.deepcopy(cfg)
    latent = cfg["model"]["io_channels"]
    adds = [["inpaint_mask", 1], ["inpaint_masked_input", latent]]
    if accompaniment:
        adds += [["accomp_mask", 1], ["accomp_input", latent]]
    cfg["sample_size"] = (context + chunk) * cfg["model"]["pretransform"]["config"]["downsampling_ratio"]
    cfg["model"]["diffusion"]["input_add_ids"] = adds
    cfg["model"]["diffusion"]["config"].update(postpend=True, input_add_dims=copy.deepcopy(adds))
    mask = {"fixed_mask_size": context, "context_router_attention_pattern": pattern}
    if pattern == "block-causal":
        mask.update(block_causal_chunk_size=chunk, block_causal_window_chunks=context // chunk)
    inpainting = {"mask_kwargs": mask}
    if accompaniment:
        inpainting["accomp_kwargs"] = {"cutoff": context - chunk}
    cfg["training"] = {"context_router": True, "inpainting": inpainting,
                       "arc": {"self_forcing": {"chunk_size": chunk, "context_size": context, "use_kv_cache": True}}}
    return cfg


def request(rate=48000, tempo=120.0, bars=1, context_bars=2, seed=5, style=0, context=None, **extra):
    bar = 4 * 60 / tempo * rate
    frames = round(bar * bars)
    if context is None:
        t = np.arange(round(bar * context_bars)) / rate
        context = np.stack([np.sin(2 * np.pi * 110 * t), np.sign(np.sin(2 * np.pi * tempo / 60 * t))]) * 0.3
    return WindowRequest(context=np.asarray(context, np.float32), sample_rate=rate, tempo_bpm=tempo, tsig_num=4,
                         tsig_den=4, context_bars=context_bars, bars=bars, frames=frames,
                         tail_frames=round(0.03 * rate), style=style, seed=seed, bar_index=8, **extra)
