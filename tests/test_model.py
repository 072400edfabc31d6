"""The built-in diffusion generator through engine.diffusion, with the shipped weights."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine import representation as rep
from engine.diffusion import WEIGHTS_FILE, limit, load_builtin
from engine.evaluate import mel_distance
from tests.model_fixtures import song_request


@pytest.fixture(scope="module")
def generator():
    return load_builtin("torch")


@pytest.mark.parametrize("tempo, tsig, rate, bars", [
    (97.3, (7, 8), 44100, 1), (61.7, (3, 4), 48000, 2), (199.9, (6, 8), 22050, 1), (133.33, (4, 4), 96000, 1)])
def test_output_is_exactly_frames_plus_tail(generator, tempo, tsig, rate, bars):
    request, _ = song_request(1, tempo, tsig, rate, bars, tail_frames=313)
    out = generator.generate(request)
    assert out.dtype == np.float32
    assert out.shape == (2, request.frames + request.tail_frames)
    assert np.isfinite(out).all()
    assert np.abs(out).max() <= 1.0
    assert np.sqrt(np.mean(out ** 2)) > 1e-3, "window is silent"


def test_same_request_same_audio_and_seed_matters(generator):
    request, _ = song_request(2)
    first, second = generator.generate(request), generator.generate(request)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, generator.generate(replace(request, seed=request.seed + 1)))


def test_batch_is_bit_identical_to_single(generator):
    a, _ = song_request(3)
    b, _ = song_request(4, tempo=90.0, tsig=(3, 4))
    batch = generator.generate_batch([a, b, replace(a, seed=99)])
    assert np.array_equal(batch[0], generator.generate(a))
    assert np.array_equal(batch[1], generator.generate(b))


def test_context_changes_the_output_towards_the_true_continuation(generator):
    right, wrong = [], []
    for seed in range(4):
        request, truth = song_request(10 + seed, style=seed)
        other, _ = song_request(20 + seed, style=(seed + 3) % 6)
        with_right = rep.resample(generator.generate(request)[:1], request.sample_rate, rep.SAMPLE_RATE)[0]
        with_wrong = rep.resample(generator.generate(replace(request, context=other.context))[:1],
                                  request.sample_rate, rep.SAMPLE_RATE)[0]
        assert mel_distance(with_right, with_wrong) > 0.3, "the context made no difference"
        right.append(mel_distance(with_right[: len(truth)], truth))
        wrong.append(mel_distance(with_wrong[: len(truth)], truth))
    assert np.mean(right) < np.mean(wrong)


@pytest.mark.parametrize("tempo", [0.0, -5.0, float("nan"), float("inf")])
def test_a_tempo_that_cannot_be_generated_says_what_is_allowed(generator, tempo):
    request, _ = song_request(5)
    with pytest.raises(ValueError, match="allowed: any finite tempo above 0 BPM"):
        generator.generate(replace(request, tempo_bpm=tempo))


@pytest.mark.parametrize("tempo", [45.0, 250.0])
def test_tempos_outside_the_model_range_play_in_double_or_half_time(generator, tempo):
    request, _ = song_request(5, tempo=tempo)
    out = generator.generate(request)
    assert out.shape == (request.context.shape[0], request.frames + request.tail_frames)
    assert request.frames == round(4 * 60.0 / tempo * request.sample_rate)
    assert np.isfinite(out).all() and np.abs(out).max() > 0.01


def test_bad_meter_and_style_say_what_is_allowed(generator):
    request, _ = song_request(5)
    with pytest.raises(ValueError, match="allowed: 4/4, 3/4, 6/8, 7/8"):
        generator.generate(replace(request, tsig_num=5, tsig_den=4))
    with pytest.raises(ValueError, match="allowed: 0 to 7"):
        generator.generate(replace(request, style=8))


def test_short_or_empty_context_still_generates(generator):
    request, _ = song_request(6)
    for context in (request.context[:, -1000:], np.zeros((2, 0), np.float32)):
        out = generator.generate(replace(request, context=context))
        assert out.shape == (2, request.frames + request.tail_frames) and np.isfinite(out).all()


def test_missing_and_corrupt_weights_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected an .npz"):
        load_builtin("torch", tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="corrupt or not a livediff model"):
        load_builtin("torch", tmp_path)
    (tmp_path / "context_encoder.onnx").write_bytes(b"garbage")
    (tmp_path / "denoiser.onnx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt or not a livediff graph"):
        load_builtin("onnx", tmp_path)
    with pytest.raises(ValueError, match="allowed: auto, torch, onnx"):
        load_builtin("tensorflow")


def test_limiter_keeps_peaks_below_full_scale_and_leaves_quiet_audio_alone():
    t = np.arange(48000) / 48000
    quiet = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert np.array_equal(limit(quiet), quiet)
    loud = quiet * 4
    loud[1000] = 9.0
    limited = limit(loud)
    assert np.abs(limited).max() <= 0.98
    assert np.abs(limited[20000:30000]).max() > 0.9  # limited, not muted


def test_eval_writes_metrics_json_and_png(tmp_path):
    import json

    from bridge.cli import main

    assert main(["eval", "--backend", "onnx", "--examples", "2", "--steps", "2", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    context = results["by_steps"][0]["context"]
    assert 0.0 <= context["beat_alignment"] <= 1.0 and context["mel_distance"]["right"] > 0
    rollout = results["rollout"]
    assert rollout["nonfinite_windows"] == 0 and rollout["peak"] <= 1.0
    assert (tmp_path / "eval.png").stat().st_size > 10_000


def test_guidance_and_step_count_change_the_output(generator):
    from engine.diffusion import DiffusionGenerator, SamplingOptions

    request, _ = song_request(8)
    plain = generator.generate(request)
    for options in (SamplingOptions(guidance=1.5), SamplingOptions(steps=1)):
        out = DiffusionGenerator(generator.backend, options).generate(request)
        assert out.shape == plain.shape and np.isfinite(out).all() and not np.array_equal(out, plain)
