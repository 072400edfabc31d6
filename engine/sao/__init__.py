"""Stable Audio Open Small, and LMDM's fine-tunes of it, as livediff's "sao_small" generator.

    config.py         model_config.json -> SaoConfig (unsupported keys refused by name)
    model.py          the architecture in torch, with the checkpoints' key names
    weights.py        strict .safetensors / .ckpt loading
    prompts.py        prompt embeddings without a download (`livediff embed-prompts`)
    generator.py      WindowRequest -> audio on the host grid (backend-agnostic, numpy)
    torch_backend.py  eager torch
    onnx_backend.py   ONNX Runtime (no torch import)
    export.py         `livediff export-sao`: the ONNX graphs

`load_generator(DIR)` is what `livediff serve --model sao-small=DIR` registers.
"""
from __future__ import annotations

from pathlib import Path

from engine.sao.config import CONFIG_FILE, ONNX_DIR, load_config
from engine.sao.generator import SaoGenerator, SaoOptions
from engine.sao.prompts import EMBEDDINGS_FILE, PromptBank, style_prompts

BACKENDS = ("auto", "torch", "onnx")


def onnx_exported(directory: Path) -> bool:
    return (Path(directory) / ONNX_DIR / "encoder.onnx").is_file()


def config_path(directory: Path) -> Path:
    """model_config.json of the folder, or the copy next to its exported graphs."""
    path = Path(directory) / CONFIG_FILE
    exported = Path(directory) / ONNX_DIR / CONFIG_FILE
    return exported if not path.is_file() and exported.is_file() else path


def load_generator(directory: Path, backend: str = "auto", t5_dir: Path | None = None, threads: int = 2,
                   options: SaoOptions = SaoOptions()) -> SaoGenerator:
    """The generator for a folder holding model_config.json and model.safetensors / model.ckpt
    and/or the graphs of `livediff export-sao` in onnx/. backend 'auto' uses ONNX Runtime when
    the graphs are there, torch otherwise."""
    directory = Path(directory)
    if backend not in BACKENDS:
        raise ValueError(f"unknown SAO backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if not directory.is_dir():
        raise FileNotFoundError(f"SAO model folder {directory} does not exist")
    config = load_config(config_path(directory))        # refuses unsupported keys before any weights load
    if backend == "auto":
        backend = "onnx" if onnx_exported(directory) else "torch"
    if backend == "onnx":
        from engine.sao.onnx_backend import OnnxSaoBackend
        runner = OnnxSaoBackend(directory / ONNX_DIR, config, threads)
    else:
        from engine.sao.torch_backend import TorchSaoBackend
        from engine.sao.weights import load_model
        runner = TorchSaoBackend(load_model(directory, config), threads)
    prompts = PromptBank(config, t5_dir, directory / EMBEDDINGS_FILE)
    return SaoGenerator(runner, config, prompts, style_prompts(), options)


def register_sao_small(directory: Path, t5_dir: Path | None = None, backend: str = "auto", threads: int = 2) -> None:
    """Register the "sao_small" generator for `directory` (what `livediff serve --model
    sao-small=DIR` does). The folder and its config are checked now, so a bad one fails at startup;
    the weights load when a session first asks for the generator."""
    from engine.generators import register
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"SAO model folder {directory} does not exist")
    load_config(config_path(directory))
    if not onnx_exported(directory):
        from engine.sao.weights import weights_file
        weights_file(directory)
    register("sao_small", lambda: load_generator(directory, backend, t5_dir, threads))
