"""The "custom" generator (LD_GENERATOR_CUSTOM): a livediff checkpoint of the producer's own,
given by `livediff serve --model DIR`, served by the same code as the built-in model.

DIR is the folder a `livediff train --data ... --out DIR` run wrote: livediff.npz, and the two
.onnx graphs once `livediff export-onnx --weights DIR/livediff.npz` has written them there (ONNX
Runtime when present, else torch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from engine.diffusion import WEIGHTS_DIR, WEIGHTS_FILE, DiffusionGenerator, load_builtin, onnx_available


def check_model_dir(model_dir: Path) -> Path:
    """The folder as given, if it holds a model; else a ValueError saying what it should hold."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise ValueError(f"--model {model_dir} is not a folder; give the --out folder of a `livediff train` run")
    if not (model_dir / WEIGHTS_FILE).is_file() and not onnx_available(model_dir):
        raise ValueError(f"--model {model_dir} holds no model: expected {WEIGHTS_FILE} (written by `livediff train`) "
                         "or context_encoder.onnx + denoiser.onnx (written by `livediff export-onnx`)")
    if model_dir.resolve() == WEIGHTS_DIR.resolve():
        raise ValueError(f"--model {model_dir} is the built-in model's folder; it is served as the diffusion generator")
    return model_dir


def loader(model_dir: Path, threads: int = 2) -> Callable[[], DiffusionGenerator]:
    """A loader for the generator registry: checks the folder now, loads the model when called."""
    model_dir = check_model_dir(model_dir)

    def load() -> DiffusionGenerator:
        generator = load_builtin("auto", model_dir, threads=threads)
        generator.name = "custom"
        return generator
    return load


def not_given() -> DiffusionGenerator:
    raise ValueError("no custom model: start the engine with `livediff serve --model DIR`, DIR being the --out "
                     "folder of a `livediff train --data ...` run")
