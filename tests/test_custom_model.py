"""The custom generator: a fine-tuned checkpoint served by the built-in model's code."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from engine.custom_model import check_model_dir, loader
from engine.diffusion import WEIGHTS_DIR, WEIGHTS_FILE, load_builtin
from engine.model import load_weights, save_weights
from tests.model_fixtures import song_request


def test_a_fine_tuned_model_is_served_and_sounds_different(tmp_path):
    model = load_weights(WEIGHTS_DIR / WEIGHTS_FILE)
    with torch.no_grad():   # a stand-in for a fine-tune: the same model, its output head moved
        model.out.frame.bias.add_(0.3)
    save_weights(model, tmp_path / WEIGHTS_FILE)
    custom = loader(tmp_path)()
    assert custom.name == "custom" and custom.backend.name == "torch"
    request, _ = song_request(40)
    mine, builtin = custom.generate(request), load_builtin("torch").generate(request)
    assert mine.shape == builtin.shape and np.isfinite(mine).all()
    assert not np.allclose(mine, builtin, atol=1e-3)


def test_a_model_folder_that_is_not_one_says_what_it_needs(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        check_model_dir(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no model: expected livediff.npz"):
        check_model_dir(tmp_path)
    with pytest.raises(ValueError, match="built-in model's folder"):
        check_model_dir(WEIGHTS_DIR)
    shutil.copy(WEIGHTS_DIR / "denoiser.onnx", tmp_path)
    shutil.copy(WEIGHTS_DIR / "context_encoder.onnx", tmp_path)
    assert loader(tmp_path)().backend.name == "onnx"
