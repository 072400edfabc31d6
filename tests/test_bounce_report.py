"""What a bounce tells you: the tempo check, the progress line, the summary, --report (PNG and
JSON with the run's numbers) and --stems, through the real VST3 with the loop generator."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.bounce import Progress, estimate_input_tempo, tempo_warning
from conftest import REPO

LOOP = REPO / "tests" / "data" / "loop_100bpm.wav"
SR, BARS = 44100, 6
BAR = SR * 60 * 4 // 100


def read(path):
    from pedalboard.io import AudioFile
    with AudioFile(str(path)) as f:
        return f.read(f.frames)


@pytest.mark.parametrize("bpm, warns", [(100.0, False), (101.9, False), (50.0, False), (200.0, False),
                                        (103.0, True), (140.0, True), (75.0, True)])
def test_tempo_warning_allows_2_percent_halves_and_doubles(bpm, warns):
    warning = tempo_warning(bpm, 100.0)
    assert (warning is not None) == warns
    if warns:
        assert f"--bpm {bpm:g} disagrees with the input's estimated tempo 100.00 BPM" in warning


def test_the_engines_estimate_finds_the_loops_tempo():
    audio = read(LOOP)
    assert estimate_input_tempo(audio, SR) == pytest.approx(100.0, abs=0.5)
    assert estimate_input_tempo(audio[:, :SR // 4], SR) is None     # a quarter second: too short
    assert estimate_input_tempo(np.zeros((2, 10 * SR), np.float32), SR) is None     # no beat to go by


def test_progress_line_names_bars_windows_speed_and_eta(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    progress = Progress(True, total_frames=8 * BAR, bar_frames=BAR, rate=SR)
    progress.update(3 * BAR, windows=2)
    progress.close()
    line = stream.getvalue()
    assert line.startswith("\r[#########") and "bar 3/8  windows 2" in line and "x real time  ETA 0:" in line
    stream.truncate(0)
    Progress(False, 8 * BAR, BAR, SR).update(BAR, 1)
    assert stream.getvalue() == "", "a progress line off a terminal"


def bounce(tmp_path, *extra):
    return subprocess.run([sys.executable, "-m", "bridge.cli", "bounce", str(LOOP), "-o", str(tmp_path / "out.wav"),
                           "--bars", str(BARS), "--generator", "loop", "--seed", "5", "--window-log",
                           str(tmp_path / "w.jsonl"), *extra], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_report_png_and_json_hold_the_numbers_of_the_run_and_a_wrong_bpm_is_flagged(tmp_path):
    result = bounce(tmp_path, "--bpm", "140", "--report", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.png"))
    assert result.returncode == 0, result.stderr
    assert "warning: --bpm 140 disagrees with the input's estimated tempo 100." in result.stderr
    assert result.stderr.count("engine connected") == 1, "pedalboard's throwaway instances each said so"
    numbers = json.loads((tmp_path / "r.json").read_text())
    log = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    log = [e for e in log if e["instance"] == log[-1]["instance"] and e["start_sample"] < round(BARS * 4 * 60 / 140 * SR)]
    assert numbers["bpm"] == 140 and numbers["bars"] == BARS and numbers["sample_rate"] == SR
    assert numbers["complete"] and numbers["underrun_blocks"] == 0 and numbers["missed_bars"] == []
    assert [w["start_sample"] for w in numbers["windows"]] == sorted({e["start_sample"] for e in log})
    assert [w["kind"] for w in numbers["windows"]] == ["preroll", "preroll"] + ["generated"] * (BARS - 2)
    assert numbers["windows_generated"] == BARS - 2
    out = read(tmp_path / "out.wav")
    assert out.shape[1] == round(BARS * 4 * 60 / 140 * SR) == round(numbers["audio_seconds"] * SR)
    summary = result.stdout.strip().splitlines()[-1]
    assert summary == (f"bounced {BARS} bars ({numbers['audio_seconds']:.1f} s) in {numbers['render_seconds']:.1f} s "
                       f"({numbers['speed']:.1f}x real time): {BARS - 2} windows generated, 0 underruns, "
                       f"latency 0 samples -> {tmp_path / 'out.wav'}")
    from PIL import Image
    with Image.open(tmp_path / "r.png") as image:
        assert image.size == (1260, 720)
        assert json.loads(image.text["livediff"]) == numbers
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 20, "a blank picture"


def test_stems_are_the_generated_and_the_dry_parts_of_the_output(tmp_path):
    result = bounce(tmp_path, "--bpm", "100", "--mix", "50", "--stems")
    assert result.returncode == 0, result.stderr
    out, generated, dry = (read(tmp_path / name) for name in ("out.wav", "out.generated.wav", "out.dry.wav"))
    np.testing.assert_array_equal(dry, read(LOOP)[:, :BARS * BAR])
    np.testing.assert_array_equal(out[:, :2 * BAR], dry[:, :2 * BAR])     # the preroll plays the dry track
    after = 2 * BAR + round(0.03 * SR)             # ...and fades out under the first window's 30 ms seam
    np.testing.assert_allclose(out[:, after:], dry[:, after:] + 0.5 * (generated[:, after:] - dry[:, after:]), atol=1e-6)
    assert not generated[:, :2 * BAR].any() and np.abs(generated[:, 2 * BAR:]).max() > 0.1   # preroll, then windows
