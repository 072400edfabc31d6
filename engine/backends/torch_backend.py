"""The torch backend: eager inference from a weights .npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.model import load_weights


class TorchBackend:
    name = "torch"

    def __init__(self, weights_path: Path, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = load_weights(weights_path)

    @torch.inference_mode()
    def encode(self, context: np.ndarray, context_phase: np.ndarray, cond: np.ndarray) -> np.ndarray:
        return self.model.encode(*map(torch.from_numpy, (context, context_phase, cond))).numpy()

    @torch.inference_mode()
    def denoise(self, noisy: np.ndarray, prior: np.ndarray, phase: np.ndarray, t: np.ndarray,
                memory: np.ndarray, cond: np.ndarray) -> np.ndarray:
        return self.model.denoise(*map(torch.from_numpy, (noisy, prior, phase, t, memory, cond))).numpy()
