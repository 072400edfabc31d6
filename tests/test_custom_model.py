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


def _fine_tuned(folder):
    """A stand-in for a fine-tune: the built-in model with its output head moved."""
    model = load_weights(WEIGHTS_DIR / WEIGHTS_FILE)
    with torch.no_grad():
        model.out.frame.bias.add_(0.3)
    save_weights(model, folder / WEIGHTS_FILE)
    return folder


def test_a_fine_tuned_model_is_served_and_sounds_different(tmp_path):
    custom = loader(_fine_tuned(tmp_path))()
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


def test_serve_model_dir_serves_the_custom_generator_to_the_plugin_parameter(engine_factory, tmp_path):
    import time

    from bridge.client import Client
    from bridge.layout import const
    from bridge.shm import TimelineReader

    engine = engine_factory("--model", str(_fine_tuned(tmp_path)))
    client = Client(engine.endpoint)
    try:
        welcome = client.hello(44100, 2, offline=True, generator=const("LD_GENERATOR_CUSTOM"))
        assert welcome["generator"] == "custom"
        reader = TimelineReader(welcome["shm_name"])
        audio = np.random.default_rng(1).uniform(-0.3, 0.3, (2, 88200 * 4)).astype(np.float32)
        deadline = time.monotonic() + 60
        for bar in range(4):
            client.transport(pos_samples=bar * 88200, tempo=120.0, offline=True)
            for pos in range(bar * 88200, (bar + 1) * 88200, 8820):
                client.audio(pos_samples=pos, tempo=120.0, audio=audio[:, pos:pos + 8820])
        custom = lambda: [e for e in engine.windows() if e.get("generator") == "custom" and e["bar_index"] >= 2]  # noqa: E731
        while time.monotonic() < deadline and not custom():   # the log line can follow the slot: wait for it
            client.recv(0.05)
        assert any(s.bar_index >= 2 for s in reader.slots())
        reader.close()
        assert custom(), engine.windows()[-3:]
    finally:
        client.bye()
        client.close()


def test_serve_refuses_a_model_folder_without_a_model(tmp_path, caplog):
    from bridge.cli import main

    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "holds no model: expected livediff.npz" in caplog.text
    assert main(["serve", "--model", f"other={tmp_path}"]) == 2
    assert "allowed: sao-small=DIR, or a plain DIR (the custom generator)" in caplog.text


def test_choosing_custom_without_a_model_says_how_to_get_one():
    from engine.custom_model import not_given

    with pytest.raises(ValueError, match="start the engine with `livediff serve --model DIR`"):
        not_given()
