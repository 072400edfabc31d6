"""The ONNX Runtime backend: the two graphs written by `livediff export-onnx`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.backends import DENOISER_FILE, ENCODER_FILE


def _session(path: Path, threads: int) -> ort.InferenceSession:
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist; write it with `livediff export-onnx --out {path.parent}`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no busy-waiting between runs: the decoder (numpy) runs right after on the same cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for unreadable models
        raise ValueError(f"ONNX model {path} is corrupt or not a livediff graph ({err}); "
                         f"re-export it with `livediff export-onnx`") from None


class OnnxBackend:
    name = "onnx"

    def __init__(self, directory: Path, threads: int = 2):
        self.encoder = _session(Path(directory) / ENCODER_FILE, threads)
        self.denoiser = _session(Path(directory) / DENOISER_FILE, threads)

    def encode(self, context: np.ndarray, context_phase: np.ndarray, cond: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"context": context, "context_phase": context_phase, "cond": cond})[0]

    def denoise(self, noisy: np.ndarray, prior: np.ndarray, phase: np.ndarray, t: np.ndarray,
                memory: np.ndarray, cond: np.ndarray) -> np.ndarray:
        return self.denoiser.run(None, {"noisy": noisy, "prior": prior, "phase": phase, "t": t,
                                        "memory": memory, "cond": cond})[0]
