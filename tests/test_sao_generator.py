"""The sao_small generator on tiny random models with SAO-Small's timing (44.1 kHz, 2048-sample
latent frames): windows of exactly frames + tail at any host rate and tempo, cut at the bar line
to the sample, repeatable per seed, driven by their context (and accompaniment), prompts from the
styles, and the same audio from torch and ONNX Runtime."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.sao import load_generator
from engine.sao.config import parse_config
from engine.sao.export import export
from engine.sao.generator import host_window
from engine.sao.model import SaoModel
from engine.sao.prompts import EMBEDDINGS_FILE, PromptBank, PromptError, style_prompts
from engine.sao.weights import save
from tests.sao_fixtures import lmdm, request, tiny_config


def folder(tmp_path, cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = SaoModel(parse_config(cfg))
    (tmp_path / "model_config.json").write_text(json.dumps(cfg))
    save(model, tmp_path / "model.safetensors")
    return tmp_path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return folder(tmp_path_factory.mktemp("sao"), tiny_config())


def test_host_window_is_cut_at_the_bar_line_to_the_sample():
    """A model-rate sine whose phase is 0 at sample `bar_line` comes out at the host rate with
    phase 0 at host sample 0: within half a host sample (pedalboard's resampler itself delays by
    ~3.5 us at non-integer ratios), and a cut one host sample off fails the same bound."""
    model_rate, freq = 44100, 441.0
    for host_rate in (44100, 48000, 96000, 22050, 32000, 192000):
        bar_line = 8 * 2048
        t = (np.arange(bar_line + 40000) - bar_line) / model_rate
        audio = np.stack([np.sin(2 * np.pi * freq * t)] * 2).astype(np.float32)
        out = host_window(audio, bar_line, model_rate, host_rate, 9000)
        assert out.shape == (2, 9000)
        half_sample = 0.5 * 2 * np.pi * freq / host_rate     # the sine's largest change in half a sample
        for shift, within in ((0, True), (1, False), (-1, False)):
            expected = np.sin(2 * np.pi * freq * (np.arange(8000) + shift) / host_rate)
            assert (np.abs(out[:, :8000] - expected).max() < half_sample) == within, (host_rate, shift)


@pytest.mark.parametrize("rate, tempo, bars", [(48000, 100.0, 1), (44100, 140.0, 2), (22050, 77.0, 1)])
def test_windows_are_exact_and_repeatable(base, rate, tempo, bars):
    generator = load_generator(base, backend="torch")
    req = request(rate, tempo, bars)
    out = generator.generate(req)
    assert out.shape == (2, req.frames + req.tail_frames) and out.dtype == np.float32
    assert np.isfinite(out).all() and 0 < np.abs(out).max() <= 0.98
    assert np.array_equal(out, generator.generate(req))
    assert not np.allclose(out, generator.generate(request(rate, tempo, bars, seed=6)))


def test_output_follows_the_context_and_host_channels(base):
    generator = load_generator(base, backend="torch")
    a = generator.generate(request())
    silent = generator.generate(request(context=np.zeros((2, 96000))))
    assert not np.allclose(a, silent, atol=1e-3)
    mono = generator.generate(request(context=np.zeros((1, 96000))))
    assert mono.shape[0] == 1
    short = generator.generate(request(context=np.zeros((2, 1000))))   # less than one latent frame heard
    assert short.shape == a.shape


def test_long_window_is_made_in_passes_within_the_training_length(base):
    """4 bars at 60 BPM = 16 s: longer than the model's 11.9 s, so it takes several passes."""
    generator = load_generator(base, backend="torch")
    calls = []
    velocity = generator.backend.velocity
    generator.backend.velocity = lambda x, *a: calls.append(x.shape[2]) or velocity(x, *a)
    req = request(44100, 60.0, bars=4, context_bars=1)
    out = generator.generate(req)
    assert out.shape == (2, req.frames + req.tail_frames)
    per_pass = calls[::generator.options.steps]
    assert len(per_pass) >= 2 and max(calls) == generator.cfg.max_frames, calls


def test_prompts_come_from_styles_and_precomputed_embeddings(tmp_path):
    cfg_dict = tiny_config()
    path = folder(tmp_path, cfg_dict)
    cfg = parse_config(cfg_dict)
    prompts = style_prompts()
    assert len(prompts) == 6 and all(prompts.values()), prompts
    shape = (cfg.prompt_max_length, cfg.prompt_width)
    house = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    np.savez(path / EMBEDDINGS_FILE, texts=np.array([prompts[0]]), embeddings=house)
    bank = PromptBank(cfg, embeddings=path / EMBEDDINGS_FILE)
    assert np.array_equal(bank.embedding(prompts[0]), house[0])
    assert not bank.embedding(prompts[1]).any()            # not embedded: the empty prompt
    generator = load_generator(path, backend="torch")
    assert not np.allclose(generator.generate(request(style=0)), generator.generate(request(style=1)), atol=1e-4)
    np.savez(path / EMBEDDINGS_FILE, texts=np.array(["x"]), embeddings=np.zeros((1, 3, 3), np.float32))
    with pytest.raises(PromptError, match=r"needs \(1, 6, 512\); rerun `livediff embed-prompts`"):
        PromptBank(cfg, embeddings=path / EMBEDDINGS_FILE)
    with pytest.raises(PromptError, match="transformers|does not exist"):
        PromptBank(cfg, t5_dir=tmp_path / "no-t5")


@pytest.mark.parametrize("cfg", [tiny_config(), lmdm(tiny_config(), "block-causal", 192, 48, accompaniment=True),
                                 lmdm(tiny_config(), "enc-dec", 208, 48)], ids=["sao", "lmdm-block-causal", "lmdm-enc-dec"])
def test_torch_and_onnx_runtime_agree(tmp_path, cfg):
    path = folder(tmp_path, cfg)
    export(load_generator(path, backend="torch").backend.model, path / "onnx", path / "model_config.json")
    torch_gen, ort_gen = load_generator(path, backend="torch"), load_generator(path)
    assert ort_gen.backend.name == "onnx" and ort_gen.backend.provider == "CPUExecutionProvider"
    heard = np.sin(np.arange(96000) / 48000 * 2 * np.pi * 220)[None].astype(np.float32)
    req = request(48000, 128.0, input_context=heard, input_gap_bars=1)
    a, b = torch_gen.generate(req), ort_gen.generate(req)
    assert np.abs(a).max() > 0.05
    assert np.abs(a - b).max() < 2e-2 * np.abs(a).max(), np.abs(a - b).max()
    if "accomp_input" in json.dumps(cfg):       # the accompaniment reaches the model
        assert not np.allclose(a, torch_gen.generate(request(48000, 128.0)), atol=1e-3)


def test_onnx_runtime_backend_does_not_import_torch(tmp_path):
    path = folder(tmp_path, tiny_config())
    export(load_generator(path, backend="torch").backend.model, path / "onnx", path / "model_config.json")
    (path / "model.safetensors").unlink()          # the graphs are enough
    code = ("import sys; from engine.sao import load_generator; from tests.sao_fixtures import request; "
            f"g = load_generator({str(path)!r}); out = g.generate(request()); "
            "assert out.shape[1] == request().frames + request().tail_frames; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

