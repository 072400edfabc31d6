"""`livediff export-onnx`: write the model's two graphs (context encoder, denoiser) as ONNX.

The encoder runs once per window and the denoiser once per step, so ONNX Runtime reuses
the context memory exactly like the torch backend does.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from torch import nn

from engine.backends import DENOISER_FILE, ENCODER_FILE, WEIGHTS_DIR, WEIGHTS_FILE
from engine.model import LiveDiffusion, load_weights
from engine.representation import FRAMES_PER_TOKEN

HELP = "Export the built-in model (or --weights) to ONNX: context_encoder.onnx and denoiser.onnx."
OPSET = 17


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR / WEIGHTS_FILE, help="weights .npz to export")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the .onnx files (default: the folder of --weights, i.e. the run's)")


class _Encoder(nn.Module):
    def __init__(self, model: LiveDiffusion):
        super().__init__()
        self.model = model

    def forward(self, context, context_phase, cond):
        return self.model.encode(context, context_phase, cond)


class _Denoiser(nn.Module):
    def __init__(self, model: LiveDiffusion):
        super().__init__()
        self.model = model

    def forward(self, noisy, prior, phase, t, memory, cond):
        return self.model.denoise(noisy, prior, phase, t, memory, cond)


def export(weights: Path, out: Path) -> list[Path]:
    model = load_weights(weights)
    cfg = model.cfg
    out.mkdir(parents=True, exist_ok=True)
    batch, n_context, n_target = 2, 32, 18
    token = lambda n: torch.zeros(batch, n, FRAMES_PER_TOKEN, cfg.n_bins)  # noqa: E731
    context, context_phase, cond = token(n_context), torch.zeros(batch, n_context, cfg.n_phase), torch.zeros(batch, cfg.n_cond)
    memory = torch.zeros(batch, n_context, cfg.d_model)
    graphs = [
        (_Encoder(model), (context, context_phase, cond), ["context", "context_phase", "cond"], "memory", ENCODER_FILE,
         {"context": {0: "batch", 1: "context_tokens"}, "context_phase": {0: "batch", 1: "context_tokens"},
          "cond": {0: "batch"}, "memory": {0: "batch", 1: "context_tokens"}}),
        (_Denoiser(model), (token(n_target), token(n_target), torch.zeros(batch, n_target, cfg.n_phase),
                            torch.full((batch,), 0.5), memory, cond),
         ["noisy", "prior", "phase", "t", "memory", "cond"], "x0", DENOISER_FILE,
         {"noisy": {0: "batch", 1: "target_tokens"}, "prior": {0: "batch", 1: "target_tokens"},
          "phase": {0: "batch", 1: "target_tokens"}, "t": {0: "batch"}, "memory": {0: "batch", 1: "context_tokens"},
          "cond": {0: "batch"}, "x0": {0: "batch", 1: "target_tokens"}}),
    ]
    written = []
    for module, inputs, input_names, output_name, filename, axes in graphs:
        path = out / filename
        tmp = path.with_name(path.name + ".tmp")
        # the TorchScript exporter is deprecated, but the dynamo one needs onnxscript (not a dependency)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, inputs, str(tmp), input_names=input_names, output_names=[output_name],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        tmp.replace(path)
        written.append(path)
    return written


def output_folder(weights: Path, out: Path | None) -> Path:
    """Where the graphs go: next to the weights unless told; never over the shipped graphs from
    other weights (the shipped .onnx files must stay the export of the shipped livediff.npz)."""
    out = Path(out) if out is not None else Path(weights).parent
    shipped = WEIGHTS_DIR.resolve()
    if out.resolve() == shipped and Path(weights).resolve() != shipped / WEIGHTS_FILE:
        raise SystemExit(f"refusing to overwrite the shipped ONNX graphs in {WEIGHTS_DIR} with an export of {weights}; "
                         f"leave out --out to write them next to {weights}")
    return out


def run(args: argparse.Namespace) -> int:
    for path in export(args.weights, output_folder(args.weights, args.out)):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
