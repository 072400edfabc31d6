"""Reading and writing SAO checkpoints (.safetensors, .ckpt) with strict key and shape matching.

Every tensor in the file must be a tensor of the model built from model_config.json and every
tensor of the model must come from the file; the first mismatch is an error naming the key and
both shapes. Two spellings are the same tensor and are accepted for it:
- a weight-normalised convolution saved with torch's parametrizations
  (`.parametrizations.weight.original0/1`) is the `.weight_g/.weight_v` pair;
- a residual unit applies one Snake before each of its two convolutions, and the published
  code shares that Snake, so a file may store its alpha/beta once (under either index).
A .ckpt is read with `torch.load(weights_only=True)`: nothing but tensors and plain containers
is unpickled, anything else is refused.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.sao.config import CONFIG_FILE, SaoConfig, load_config
from engine.sao.model import ResidualUnit, SaoModel, Snake

WEIGHT_FILES = ("model.safetensors", "model.ckpt")
_PARAMETRIZED = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class WeightsError(ValueError):
    """A checkpoint that does not match its config (or cannot be read); names key and shape."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                return {key: f.get_tensor(key) for key in f.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"{path} is not a readable .safetensors file: {err}") from None
    if path.suffix == ".ckpt":
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError and friends: refuse, never fall back to full unpickling
            raise WeightsError(f"{path} was refused: only tensors and plain containers are loaded from a .ckpt "
                               f"(torch.load weights_only=True said: {str(err).splitlines()[0]})") from None
        state = data.get("state_dict", data) if isinstance(data, dict) else None
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in state.items()):
            raise WeightsError(f"{path} holds no state dict (expected {{'state_dict': {{name: tensor}}}} "
                               f"or {{name: tensor}})")
        return state
    raise WeightsError(f"{path}: unsupported weights file type {path.suffix!r}; supported: .safetensors, .ckpt")


def _shared_snakes(model: SaoModel) -> dict[str, str]:
    """key -> partner key for the two Snake activations of every residual unit."""
    partners = {}
    for name, module in model.named_modules():
        if isinstance(module, ResidualUnit) and isinstance(module.layers[0], Snake):
            for param in ("alpha", "beta"):
                a, b = f"{name}.layers.0.{param}", f"{name}.layers.2.{param}"
                partners[a], partners[b] = b, a
    return partners


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def load_state(model: SaoModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, strictly (see the module docstring)."""
    state = {next((key[:-len(long)] + short for long, short in _PARAMETRIZED.items() if key.endswith(long)), key): value
             for key, value in state.items()}
    expected = model.state_dict()
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise WeightsError(f"{source}: unexpected key {unknown[0]} (shape {_shape(state[unknown[0]])}) is not part "
                           f"of the model described by {CONFIG_FILE}" + (f" ({len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    partners = _shared_snakes(model)
    for key in sorted(set(expected) - set(state)):
        if key in partners and partners[key] in state:
            state[key] = state[partners[key]]
    missing = sorted(set(expected) - set(state))
    if missing:
        raise WeightsError(f"{source}: missing key {missing[0]} (expected shape {_shape(expected[missing[0]])})"
                           + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""))
    for key, target in expected.items():
        value = state[key]
        if value.shape != target.shape:
            raise WeightsError(f"{source}: key {key} has shape {_shape(value)}, the config implies {_shape(target)}")
        if value.dtype not in _FLOATS:
            raise WeightsError(f"{source}: key {key} has dtype {value.dtype}; floating point is required")
    model.load_state_dict({key: state[key].float() for key in expected}, strict=True)


def weights_file(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    raise WeightsError(f"{directory} holds neither {' nor '.join(WEIGHT_FILES)} (get them from the publisher; "
                       f"see the README's Stable Audio Open Small section)")


def load_model(directory: Path, config: SaoConfig | None = None) -> SaoModel:
    """model_config.json (checked first: an unsupported key is refused before any weights load),
    then model.safetensors or model.ckpt from `directory`."""
    directory = Path(directory)
    config = config or load_config(directory / CONFIG_FILE)
    path = weights_file(directory)
    model = SaoModel(config)
    load_state(model, read_state_dict(path), str(path))
    return model.eval().requires_grad_(False)


def save(model: SaoModel, path: Path) -> Path:
    """Write the model's state dict as .safetensors or as a .ckpt ({'state_dict': ...})."""
    path = Path(path)
    state = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, str(path))
    elif path.suffix == ".ckpt":
        torch.save({"state_dict": state}, str(path))
    else:
        raise WeightsError(f"{path}: unsupported weights file type {path.suffix!r}; supported: .safetensors, .ckpt")
    return path
