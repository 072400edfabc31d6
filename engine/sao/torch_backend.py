"""The torch backend of the sao_small generator: eager inference of engine/sao/model.py."""
from __future__ import annotations

import numpy as np
import torch

from engine.sao.model import SaoModel


def first_visible_frame(cfg) -> int:
    """Block-causal: the target's block sees only the last window_chunks - 1 context chunks."""
    if cfg.attention != "block-causal":
        return 0
    return (cfg.context_frames // cfg.chunk_frames - cfg.window_chunks + 1) * cfg.chunk_frames


class TorchSaoBackend:
    name = "torch"

    def __init__(self, model: SaoModel, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval().requires_grad_(False)
        self.cfg = model.cfg

    @staticmethod
    def _t(array: np.ndarray | None) -> torch.Tensor | None:
        return None if array is None else torch.from_numpy(np.ascontiguousarray(array, np.float32))

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        return self.model.autoencoder.encode(self._t(audio)).numpy()

    @torch.inference_mode()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self.model.autoencoder.decode(self._t(latents)).numpy()

    @torch.inference_mode()
    def velocity(self, x, t, prompt, seconds) -> np.ndarray:
        cross, global_cond = self.model.condition(self._t(prompt), self._t(seconds))
        return self.model.dit(self._t(x), self._t(t), cross, global_cond).numpy()

    @torch.inference_mode()
    def context_kv(self, input_add, prompt, seconds) -> np.ndarray:
        cross, _ = self.model.condition(self._t(prompt), self._t(seconds))
        return self.model.dit.context_kv(self._t(input_add), cross, self.cfg.attention, self.cfg.chunk_frames,
                                         self.cfg.window_chunks).numpy()

    @torch.inference_mode()
    def velocity_cached(self, x, t, prompt, seconds, input_add, cache) -> np.ndarray:
        cross, global_cond = self.model.condition(self._t(prompt), self._t(seconds))
        return self.model.dit.velocity_cached(self._t(x), self._t(t), cross, global_cond, self._t(input_add),
                                              self._t(cache), first_visible_frame(self.cfg)).numpy()
