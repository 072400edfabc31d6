"""`livediff export-sao DIR`: write the sao_small generator's ONNX graphs to DIR/onnx/.

encoder.onnx (audio -> latents), decoder.onnx (latents -> audio) and velocity.onnx (one DiT
step over context + target) for SAO-Small; LMDM fine-tunes get context_kv.onnx (the context's
keys and values, once per pass) and velocity_cached.onnx (a step over the target) instead of
velocity.onnx. Sequence lengths are dynamic. The config is copied next to the graphs, so the ONNX
Runtime backend needs neither torch nor the checkpoint.
"""
from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from engine.sao.config import CONFIG_FILE, ONNX_DIR
from engine.sao.model import SaoModel
from engine.sao.torch_backend import first_visible_frame
from engine.sao.weights import load_model

HELP = "Export a Stable Audio Open Small folder (config + weights) to ONNX graphs in DIR/onnx/."
OPSET = 17


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="folder with model_config.json and model.safetensors / model.ckpt")
    parser.add_argument("--out", type=Path, help="folder for the graphs (default: MODEL_DIR/onnx)")


class _Encode(nn.Module):
    def __init__(self, model: SaoModel):
        super().__init__()
        self.model = model

    def forward(self, audio):
        return self.model.autoencoder.encode(audio)


class _Decode(_Encode):
    def forward(self, latents):
        return self.model.autoencoder.decode(latents)


class _Velocity(_Encode):
    def forward(self, x, t, seconds, prompt=None):
        cross, global_cond = self.model.condition(prompt, seconds)
        return self.model.dit(x, t, cross, global_cond)


class _ContextKV(_Encode):
    def forward(self, input_add, seconds, prompt=None):
        cfg = self.model.cfg
        cross, _ = self.model.condition(prompt, seconds)
        return self.model.dit.context_kv(input_add, cross, cfg.attention, cfg.chunk_frames, cfg.window_chunks)


class _VelocityCached(_Encode):
    def forward(self, x, t, input_add, cache, seconds, prompt=None):
        cross, global_cond = self.model.condition(prompt, seconds)
        return self.model.dit.velocity_cached(x, t, cross, global_cond, input_add, cache,
                                              first_visible_frame(self.model.cfg))


def graphs(model: SaoModel) -> list[tuple]:
    """(file, module, inputs {name: example}, output name, dynamic axes) for each graph."""
    cfg = model.cfg
    latent, ratio, depth = cfg.decoder.latent_dim, cfg.downsampling_ratio, cfg.dit.depth
    n_add = sum(d for _, d in cfg.input_add_ids)
    conditioning = {"seconds": torch.ones(1)}
    if cfg.prompt_id is not None:
        conditioning["prompt"] = torch.zeros(1, cfg.prompt_max_length, cfg.prompt_width)
    frames = {"x": {2: "frames"}}
    found = [("encoder.onnx", _Encode(model), {"audio": torch.zeros(1, cfg.audio_channels, 4 * ratio)}, "latents",
              {"audio": {2: "samples"}, "latents": {2: "frames"}}),
             ("decoder.onnx", _Decode(model), {"latents": torch.zeros(1, latent, 4)}, "audio",
              {"latents": {2: "frames"}, "audio": {2: "samples"}})]
    if not cfg.lmdm:
        found.append(("velocity.onnx", _Velocity(model), {"x": torch.zeros(1, latent, 12), "t": torch.ones(1),
                                                          **conditioning}, "v", {**frames, "v": {2: "frames"}}))
        return found
    n_context, chunk = cfg.context_frames, cfg.chunk_frames
    cache = torch.zeros(depth, 2, 1, cfg.dit.num_heads, n_context, cfg.dit.dim_heads)
    found.append(("context_kv.onnx", _ContextKV(model), {"input_add": torch.zeros(1, n_add, n_context), **conditioning},
                  "cache", {}))
    found.append(("velocity_cached.onnx", _VelocityCached(model),
                  {"x": torch.zeros(1, latent, chunk), "t": torch.ones(1), "input_add": torch.zeros(1, n_add, chunk),
                   "cache": cache, **conditioning}, "v", {}))
    return found


def export(model: SaoModel, out: Path, config_file: Path | None = None) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, module, inputs, output, axes in graphs(model):
        path = out / filename
        tmp = path.with_name(path.name + ".tmp")
        # the TorchScript exporter is deprecated, but the dynamo one needs onnxscript (not a dependency)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), tuple(inputs.values()), str(tmp), input_names=list(inputs),
                              output_names=[output], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        tmp.replace(path)
        written.append(path)
    if config_file is not None:
        shutil.copyfile(config_file, out / CONFIG_FILE)
    return written


def run(args: argparse.Namespace) -> int:
    out = args.out or args.model_dir / ONNX_DIR
    for path in export(load_model(args.model_dir), out, args.model_dir / CONFIG_FILE):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
