"""Text conditioning for SAO without a download: checkpoints do not contain their T5 encoder.

Per prompt text, in this order:
1. a local T5 encoder directory the user points at (loaded with `transformers`, files only);
2. embeddings precomputed with `livediff embed-prompts` (prompt_embeddings.npz next to the model);
3. the empty prompt: all-zero tokens, which is what the model saw when its prompt was dropped in
   training (classifier-free-guidance dropout).
Style ids map to prompt text through the `prompt` key of presets/styles/<style>.toml.

`livediff embed-prompts DIR --t5 T5DIR [--prompt TEXT ...]` writes DIR/prompt_embeddings.npz for
the given texts (default: every preset's prompt), so serving needs neither T5 nor transformers.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from engine.sao.config import CONFIG_FILE, SaoConfig, load_config

EMBEDDINGS_FILE = "prompt_embeddings.npz"
HELP = "Precompute T5 prompt embeddings for a Stable Audio Open Small folder (from a local T5 directory)."
log = logging.getLogger("livediff.sao")


class PromptError(ValueError):
    pass


def style_prompts() -> dict[int, str]:
    from engine.styles import load_styles
    return {style.id: style.prompt for style in load_styles()}


class T5Encoder:
    """A T5 encoder from a local `transformers` directory (tokenizer files and weights)."""

    def __init__(self, directory: Path, max_length: int, width: int):
        try:
            import torch
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as err:
            raise PromptError(f"a T5 directory was given but {err.name} is not installed "
                              f"(pip install transformers sentencepiece)") from None
        directory = Path(directory)
        if not directory.is_dir():
            raise PromptError(f"T5 directory {directory} does not exist")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            self.model = T5EncoderModel.from_pretrained(str(directory), local_files_only=True).eval()
        except (OSError, ValueError) as err:
            raise PromptError(f"{directory} is not a usable T5 directory: {err}") from None
        if self.model.config.d_model != width:
            raise PromptError(f"{directory} is {self.model.config.d_model} wide; the checkpoint's prompt "
                              f"conditioner expects {width}")
        self.max_length, self._torch = max_length, torch

    def encode(self, texts: list[str]) -> np.ndarray:
        """[len(texts), max_length, width]; padding positions are zero, as in the conditioner."""
        tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding="max_length",
                                return_tensors="pt")
        with self._torch.no_grad():
            hidden = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return (hidden.float() * tokens["attention_mask"][..., None].float()).numpy()


def read_embeddings(path: Path, cfg: SaoConfig) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            texts, embeddings = [str(t) for t in data["texts"]], data["embeddings"].astype(np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise PromptError(f"{path} is not a prompt embeddings file from `livediff embed-prompts`: {err}") from None
    expected = (len(texts), cfg.prompt_max_length, cfg.prompt_width)
    if embeddings.shape != expected or not np.isfinite(embeddings).all():
        raise PromptError(f"{path}: embeddings have shape {embeddings.shape} (or non-finite values); this model "
                          f"needs {expected}; rerun `livediff embed-prompts`")
    return dict(zip(texts, embeddings))


class PromptBank:
    """Prompt text -> [max_length, width] float32 embedding (see the module docstring)."""

    def __init__(self, cfg: SaoConfig, t5_dir: Path | None = None, embeddings: Path | None = None):
        self.cfg = cfg
        self.encoder = T5Encoder(t5_dir, cfg.prompt_max_length, cfg.prompt_width) if t5_dir else None
        self.stored = read_embeddings(embeddings, cfg) if embeddings and Path(embeddings).is_file() else {}
        self._cache: dict[str, np.ndarray] = {}
        self._warned: set[str] = set()

    @property
    def shape(self) -> tuple[int, int]:
        return self.cfg.prompt_max_length, self.cfg.prompt_width

    def embedding(self, text: str) -> np.ndarray:
        if text in self._cache:
            return self._cache[text]
        if text and self.encoder is not None:
            value = self.encoder.encode([text])[0]
        elif text in self.stored:
            value = self.stored[text]
        else:
            if text and text not in self._warned:
                self._warned.add(text)
                log.warning("no embedding for prompt %r (no T5 directory and not in %s): using the empty prompt; "
                            "run `livediff embed-prompts` to add it", text, EMBEDDINGS_FILE)
            value = np.zeros(self.shape, np.float32)
        self._cache[text] = value
        return value


# --- `livediff embed-prompts` -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="folder with model_config.json (the embeddings go there)")
    parser.add_argument("--t5", type=Path, required=True, help="local T5 encoder directory (transformers format)")
    parser.add_argument("--prompt", action="append", help="prompt text (repeatable; default: every style's prompt)")


def embed_prompts(model_dir: Path, t5_dir: Path, texts: list[str] | None = None) -> Path:
    cfg = load_config(Path(model_dir) / CONFIG_FILE)
    if cfg.prompt_id is None:
        raise PromptError(f"{model_dir}: this model has no prompt conditioner")
    texts = sorted({t for t in (texts or style_prompts().values()) if t})
    if not texts:
        raise PromptError("no prompt texts (the styles have no `prompt` and none was given with --prompt)")
    encoder = T5Encoder(t5_dir, cfg.prompt_max_length, cfg.prompt_width)
    path = Path(model_dir) / EMBEDDINGS_FILE
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, texts=np.array(texts), embeddings=encoder.encode(texts).astype(np.float32))
    tmp.replace(path)
    return path


def run(args: argparse.Namespace) -> int:
    try:
        path = embed_prompts(args.model_dir, args.t5, args.prompt)
    except (PromptError, ValueError) as err:
        print(f"embed-prompts: {err}")
        return 1
    print(f"wrote {path}")
    return 0
