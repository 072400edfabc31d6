"""`livediff train`: a tiny run learns, checkpoints, resumes; fine-tuning skips bad loops."""
from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
from pedalboard.io import AudioFile

from engine import train
from engine.model import load_weights
from engine.music import render_song
from engine.sampled import SOUNDFONT
from engine.styles import load_styles


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_tiny_run_lowers_the_loss_checkpoints_and_resumes(tmp_path, capsys):
    common = ["--out", str(tmp_path), "--pool-songs", "8", "--batch-size", "8", "--checkpoint-every", "10"]
    summary = train.train(parse(*common, "--steps", "30"))
    assert summary["steps"] == 30
    assert summary["probe_loss_end"] < 0.9 * summary["probe_loss_start"]
    assert (tmp_path / "checkpoint.pt").is_file()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [10, 20, 30]
    assert load_weights(tmp_path / "livediff.npz").cfg.d_model > 0

    resumed = train.train(parse(*common, "--steps", "32"))
    assert resumed["steps"] == 32
    assert "resuming from" in capsys.readouterr().out


def test_same_seed_same_batches():
    clips = train.song_pool(3, 0, 4)
    a = train.make_batch(clips, np.random.default_rng([3, 5]), 4, 0.1)
    b = train.make_batch(train.song_pool(3, 0, 4), np.random.default_rng([3, 5]), 4, 0.1)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
                    reason="apt-get install fluidsynth fluid-soundfont-gm")
def test_a_share_of_the_song_pool_is_played_by_sampled_instruments():
    synth, mixed = train.song_pool(3, 0, 8), train.song_pool(3, 0, 8, sampled_share=0.5)
    same = [np.array_equal(a.audio, b.audio) for a, b in zip(synth, mixed)]
    assert 0 < same.count(False) < len(same)          # some songs re-played, some left as they were
    for a, b in zip(synth, mixed):                    # the same songs: tempo, meter, length, style
        assert (a.tempo, a.tsig, a.style, a.tokens.shape) == (b.tempo, b.tsig, b.style, b.tokens.shape)
        assert b.audio.ndim == 1 and np.isfinite(b.audio).all() and np.abs(b.audio).max() > 0.1
    again = train.song_pool(3, 0, 8, sampled_share=0.5)
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(mixed, again))


def test_a_sampled_share_that_is_not_a_share_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="allowed: 0 to 1"):
        train.train(parse("--out", str(tmp_path), "--sampled-share", "1.5"))


def test_tempo_from_filename():
    assert train.tempo_from_name("drums_120bpm_dry.wav") == 120.0
    assert train.tempo_from_name("Loop 87.5 BPM.flac") == 87.5
    assert train.tempo_from_name("loop.wav") is None


def test_fine_tune_on_loops_skips_bad_files(tmp_path, capsys):
    loops = tmp_path / "loops"
    loops.mkdir()
    song = render_song(load_styles()[5], 100.0, (4, 4), 2, 11)
    with AudioFile(str(loops / "rock_100bpm.wav"), "w", 16000, 1) as f:
        f.write(song.audio[None])
    with AudioFile(str(loops / "blip_120bpm.wav"), "w", 16000, 1) as f:
        f.write(np.zeros((1, 800), np.float32))
    (loops / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (loops / "notes.txt").write_text("ignored")
    summary = train.train(parse("--data", str(loops), "--init", "builtin", "--out", str(tmp_path / "run"),
                                "--steps", "3", "--batch-size", "2", "--checkpoint-every", "3"))
    out = capsys.readouterr().out
    assert "using rock_100bpm.wav: 100.00 BPM" in out
    assert "skipping blip_120bpm.wav: shorter than one 4/4 bar" in out
    assert "skipping broken.wav" in out
    assert summary["steps"] == 3


def _write_loop(path, bars: int, tempo: float, rate: int, seed: int, stereo: bool = True) -> None:
    song = render_song(load_styles()[seed % 6], tempo, (4, 4), bars, seed, tail_sixteenths=0, sample_rate=rate,
                       stereo=stereo)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = song.audio if stereo else song.audio[None]
    with AudioFile(str(path), "w", rate, audio.shape[0]) as f:
        f.write(audio)


def test_loops_of_1_2_and_4_bars_in_nested_folders_at_44k1_and_48k_keep_their_length(tmp_path):
    # 2 bars at 120 BPM at exactly 48 kHz is 192 000 frames: once read as 1 bar after resampling
    cases = {"a/kick_120bpm.wav": (1, 120.0, 44100), "a/b/groove_120bpm.wav": (2, 120.0, 48000),
             "c/d/e/long_96bpm.flac": (4, 96.0, 48000), "top_133.5bpm.wav": (2, 133.5, 44100),
             "x/unnamed.wav": (4, 110.0, 48000)}
    for i, (name, (bars, tempo, rate)) in enumerate(cases.items()):
        _write_loop(tmp_path / name, bars, tempo, rate, i)
    found = {str(p.relative_to(tmp_path)) for p in train.audio_files(tmp_path)}
    assert found == set(cases)
    for name, (bars, tempo, rate) in cases.items():
        loop = train.read_loop(tmp_path / name)
        assert (loop.bars, loop.sample_rate) == (bars, rate), name
        assert abs(loop.tempo - tempo) < (1e-9 if "bpm" in name else 0.02 * tempo), name
        played = loop.played(3)
        assert abs(len(played) - 3 * bars * 4 * 60.0 / loop.tempo * 16000) <= 2, name


def test_fine_tune_defaults_to_minutes_and_reads_nested_loops(tmp_path, capsys):
    _write_loop(tmp_path / "loops/drums/beat_100bpm.wav", 2, 100.0, 48000, 3)
    _write_loop(tmp_path / "loops/keys/more/chords_100bpm.wav", 1, 100.0, 44100, 4)
    summary = train.train(parse("--data", str(tmp_path / "loops"), "--init", "builtin", "--out", str(tmp_path / "run"),
                                "--steps", "2", "--batch-size", "2", "--checkpoint-every", "2"))
    out = capsys.readouterr().out
    assert "using drums/beat_100bpm.wav: 100.00 BPM, 2 bar(s) at 48000 Hz" in out
    assert "using keys/more/chords_100bpm.wav: 100.00 BPM, 1 bar(s) at 44100 Hz" in out
    assert summary["steps"] == 2
    assert train.default_steps(parse("--data", "x")) == 300
    assert train.default_steps(parse("--data", "x", "--steps", "50")) == 50
    assert train.default_steps(parse()) == 15000
