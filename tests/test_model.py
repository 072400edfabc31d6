"""The built-in diffusion generator through engine.diffusion, with the shipped weights."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine import representation as rep
from engine.diffusion import WEIGHTS_FILE, limit, load_builtin
from engine.evaluate import mel_distance
from engine.loop_generator import LoopGenerator
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
        wrong_request = replace(request, context=other.context, input_context=other.context)
        with_wrong = rep.resample(generator.generate(wrong_request)[:1], request.sample_rate, rep.SAMPLE_RATE)[0]
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


@pytest.mark.parametrize("tsig", [(5, 4), (6, 4), (9, 8), (12, 8), (5, 8), (2, 2), (7, 16)])
def test_every_meter_gets_music_from_the_model(generator, tsig):
    request, _ = song_request(5, tempo=110.0, tsig=tsig)
    out = generator.generate(request)
    assert out.shape == (2, request.frames + request.tail_frames) and np.isfinite(out).all()
    assert np.sqrt(np.mean(out ** 2)) > 1e-2, f"{tsig} is silent"
    loop = LoopGenerator().generate(request)
    assert mel_distance(out[0, :request.frames], loop[0, :request.frames]) > 0.05, "the model did not play it"


def test_a_meter_the_model_cannot_play_is_looped_with_one_log_line(generator, caplog):
    request, _ = song_request(5, tempo=110.0, tsig=(4, 4))
    for _ in range(3):
        out = generator.generate(replace(request, tsig_num=7, tsig_den=32))
    assert np.array_equal(out, LoopGenerator().generate(replace(request, tsig_num=7, tsig_den=32)))
    assert np.sqrt(np.mean(out ** 2)) > 1e-2
    assert [r.getMessage() for r in caplog.records].count(
        "time signature 7/32 is outside the model's meters (N/1 to N/16, at most 64 16ths per bar): "
        "repeating the last bar of the context instead") == 1
    with pytest.raises(ValueError, match="not supported by the model; allowed: any N/1, N/2, N/4, N/8 or N/16"):
        rep.sixteenths_per_bar(7, 32)


def test_bad_style_says_what_is_allowed(generator):
    request, _ = song_request(5)
    with pytest.raises(ValueError, match="allowed: 0 to 7"):
        generator.generate(replace(request, style=8))


def test_short_or_empty_context_still_generates(generator):
    request, _ = song_request(6)
    for context in (request.context[:, -1000:], np.zeros((2, 0), np.float32)):
        out = generator.generate(replace(request, context=context, input_context=context))
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
    for options in (SamplingOptions(guidance=1.5), SamplingOptions(steps=1), SamplingOptions(rho=1.0)):
        out = DiffusionGenerator(generator.backend, options).generate(request)
        assert out.shape == plain.shape and np.isfinite(out).all() and not np.array_equal(out, plain)


def test_the_second_step_refines_the_track_s_prior_from_low_noise_and_the_model_s_own_from_half(generator):
    from engine.diffusion import DiffusionGenerator

    levels = []

    class Recording:
        def __getattr__(self, name):
            return getattr(generator.backend, name)

        def denoise(self, x, prior, phase, t, memory, cond):
            levels.append(float(t[0]))
            return generator.backend.denoise(x, prior, phase, t, memory, cond)

    request = song_request(8)[0]        # its context is the track's input
    DiffusionGenerator(Recording(), generator.options).generate(request)
    assert levels == pytest.approx([1.0, 0.5 ** 3.32])    # t = 0.1
    levels.clear()                      # the track fell silent: the context is the model's own output
    DiffusionGenerator(Recording(), generator.options).generate(
        replace(request, input_context=np.zeros_like(request.context)))
    assert levels == pytest.approx([1.0, 0.5])
    levels.clear()                      # the track plays: the window continues its bar one phrase back
    track = np.tile(np.asarray(request.context, np.float32), 4)          # 8 bars
    DiffusionGenerator(Recording(), generator.options).generate(
        replace(request, input_context=track, input_gap_bars=1))
    strength = generator.options.lead_strength
    assert strength < 1 and levels == pytest.approx([strength, strength * 0.5 ** 3.32])   # from the noised bar


def test_eval_on_a_folder_of_loops_prints_a_table(tmp_path, capsys):
    from pedalboard.io import AudioFile

    from bridge.cli import main
    from engine.music import render_song
    from engine.styles import load_styles

    for name, rate, bars in (("drums/a_120bpm.wav", 48000, 2), ("keys/b_120bpm.wav", 44100, 1)):
        song = render_song(load_styles()[1], 120.0, (4, 4), bars, 3, tail_sixteenths=0, sample_rate=rate, stereo=True)
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        with AudioFile(str(tmp_path / name), "w", rate, 2) as f:
            f.write(song.audio)
    assert main(["eval", "--data", str(tmp_path), "--backend", "onnx", "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("loop "))
    rows = lines[header + 1: header + 3]
    assert rows[0].startswith("drums/a_120bpm.wav") and " 2  48000 " in rows[0]
    assert rows[1].startswith("keys/b_120bpm.wav") and " 1  44100 " in rows[1]
    assert lines[header + 3].startswith("mean")


def test_context_bars_changes_what_the_model_reads(generator):
    request, _ = song_request(9, context_bars=8)
    outputs = []
    for bars in (1, 2, 4, 8):   # the same 8 bars heard; the model is told to read the last `bars`
        outputs.append(generator.generate(replace(request, context_bars=bars)))
    for a, b in zip(outputs, outputs[1:]):
        assert not np.allclose(a, b, atol=1e-4)
    assert rep.context_bars_for((4, 4), 8) == 8 and rep.context_bars_for((12, 8), 8) == 5
