"""ONNX export and ONNX Runtime / torch parity on the same inputs and seed.

Tolerances: the graphs agree to 1e-4 (float32 kernels differ in summation order); the
decoded windows, after Griffin-Lim and resampling, to 2e-3 absolute on a +-1 scale."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.diffusion import WEIGHTS_DIR, WEIGHTS_FILE, SamplingOptions, load_builtin, onnx_available
from engine.export_onnx import export
from tests.model_fixtures import song_request

GRAPH_TOLERANCE = 1e-4
AUDIO_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    written = export(WEIGHTS_DIR / WEIGHTS_FILE, out)
    assert sorted(p.name for p in written) == ["context_encoder.onnx", "denoiser.onnx"]
    (out / WEIGHTS_FILE).symlink_to(WEIGHTS_DIR / WEIGHTS_FILE)
    return out


def test_graphs_agree_with_torch(exported):
    torch_backend = load_builtin("torch", exported).backend
    onnx_backend = load_builtin("onnx", exported).backend
    rng = np.random.default_rng(0)
    context = rng.standard_normal((2, 28, 8, 513), np.float32)
    context_phase = rng.standard_normal((2, 28, 9), np.float32)
    cond = rng.standard_normal((2, 13), np.float32)
    memory = torch_backend.encode(context, context_phase, cond)
    assert np.abs(memory - onnx_backend.encode(context, context_phase, cond)).max() < GRAPH_TOLERANCE
    noisy, prior = (rng.standard_normal((2, 17, 8, 513), np.float32) for _ in range(2))
    phase, t = rng.standard_normal((2, 17, 9), np.float32), np.array([0.9, 0.2], np.float32)
    expected = torch_backend.denoise(noisy, prior, phase, t, memory, cond)
    assert np.abs(expected - onnx_backend.denoise(noisy, prior, phase, t, memory, cond)).max() < GRAPH_TOLERANCE


@pytest.mark.parametrize("tempo, tsig", [(120.0, (4, 4)), (83.0, (7, 8))])
def test_windows_agree_with_torch(exported, tempo, tsig):
    request, _ = song_request(30, tempo, tsig)
    options = SamplingOptions(steps=4)
    from_torch = load_builtin("torch", exported, options).generate(request)
    from_onnx = load_builtin("onnx", exported, options).generate(request)
    assert from_torch.shape == from_onnx.shape
    assert np.abs(from_torch - from_onnx).max() < AUDIO_TOLERANCE


def test_auto_prefers_onnx_runtime_when_exported(exported, tmp_path):
    assert onnx_available(exported)
    assert load_builtin("auto", exported).backend.name == "onnx"
    (tmp_path / WEIGHTS_FILE).symlink_to(WEIGHTS_DIR / WEIGHTS_FILE)
    assert load_builtin("auto", tmp_path).backend.name == "torch"



ORT_ONLY_PROBE = """
import sys
from engine.diffusion import load_builtin
from engine.evaluate import window_request
from engine.music import render_song
from engine.styles import load_styles
song = render_song(load_styles()[0], 120.0, (4, 4), 2, 1)
out = load_builtin("onnx").generate(window_request(song.audio, song, 1, 0, 2))
print(out.shape[0], "torch" in sys.modules)
"""


def test_onnx_runtime_path_never_imports_torch():
    """The engine's default path stays small: generating a window with ORT loads no torch."""
    result = subprocess.run([sys.executable, "-c", ORT_ONLY_PROBE], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["2", "False"]


def test_shipped_onnx_graphs_match_the_shipped_weights():
    request, _ = song_request(31)
    from_torch = load_builtin("torch").generate(request)
    from_onnx = load_builtin("onnx").generate(request)
    assert np.abs(from_torch - from_onnx).max() < AUDIO_TOLERANCE


def test_export_writes_next_to_the_weights_and_never_over_the_shipped_graphs(tmp_path):
    from engine.export_onnx import output_folder

    run = tmp_path / "run"
    assert output_folder(run / WEIGHTS_FILE, None) == run
    with pytest.raises(SystemExit, match="refusing to overwrite the shipped ONNX graphs"):
        output_folder(run / WEIGHTS_FILE, WEIGHTS_DIR)
    assert output_folder(WEIGHTS_DIR / WEIGHTS_FILE, WEIGHTS_DIR) == WEIGHTS_DIR
