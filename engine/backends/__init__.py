"""Inference backends for the built-in model. Each exposes the two graphs of engine/model.py:

    encode(context, context_phase, cond) -> memory            once per window
    denoise(noisy, prior, phase, t, memory, cond) -> x0_hat    once per sampling step

on float32 numpy arrays with a leading batch axis. onnx_backend needs only onnxruntime
(no torch import), so an ORT-only engine stays small.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"   # the shipped model (package data)
WEIGHTS_FILE = "livediff.npz"
ENCODER_FILE = "context_encoder.onnx"
DENOISER_FILE = "denoiser.onnx"
