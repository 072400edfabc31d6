"""The ONNX Runtime backend of the sao_small generator: the graphs of `livediff export-sao`.
Imports onnxruntime only (no torch). The CUDA provider is used where onnxruntime-gpu finds a
GPU, the CPU provider otherwise."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.sao.config import SaoConfig


NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def providers() -> list[str]:
    """CUDA first where onnxruntime-gpu has it and an NVIDIA driver is loaded (the package lists
    the provider on any machine, and trying it without a GPU only logs errors), then CPU."""
    wanted = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers() and NVIDIA_DRIVER.exists():
        wanted.insert(0, "CUDAExecutionProvider")
    return wanted


class OnnxSaoBackend:
    name = "onnx"

    def __init__(self, directory: Path, cfg: SaoConfig, threads: int = 2):
        self.cfg = cfg
        names = ["encoder", "decoder"] + (["context_kv", "velocity_cached"] if cfg.lmdm else ["velocity"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # window lengths vary, so an arena would only grow; without it the peak is ~10 % lower
        options.enable_cpu_mem_arena = False
        self.sessions = {}
        for name in names:
            path = Path(directory) / f"{name}.onnx"
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist; write the graphs with `livediff export-sao MODEL_DIR`")
            try:
                self.sessions[name] = ort.InferenceSession(str(path), options, providers=providers())
            except Exception as err:  # ORT raises its own exception types for unreadable models
                raise ValueError(f"{path} is not a loadable ONNX graph ({err}); re-export it") from None
        self.provider = self.sessions["encoder"].get_providers()[0]

    def _run(self, name: str, **inputs) -> np.ndarray:
        feed = {key: np.ascontiguousarray(value, np.float32) for key, value in inputs.items() if value is not None}
        return self.sessions[name].run(None, feed)[0]

    def encode(self, audio):
        return self._run("encoder", audio=audio)

    def decode(self, latents):
        return self._run("decoder", latents=latents)

    def velocity(self, x, t, prompt, seconds):
        return self._run("velocity", x=x, t=t, seconds=seconds, prompt=prompt)

    def context_kv(self, input_add, prompt, seconds):
        return self._run("context_kv", input_add=input_add, seconds=seconds, prompt=prompt)

    def velocity_cached(self, x, t, prompt, seconds, input_add, cache):
        return self._run("velocity_cached", x=x, t=t, input_add=input_add, cache=cache, seconds=seconds, prompt=prompt)
