"""What a careless user types gets one clear line naming what was wrong and what is allowed, a
non-zero exit, no traceback, no output file, and no work started (no engine, no plugin)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import bridge.bounce
from bridge.cli import main
from conftest import REPO

LOOP = REPO / "tests" / "data" / "loop_100bpm.wav"
BPM_RANGE = "allowed: 20 to 300 BPM"


def write_wav(path, frames: int, rate: int = 44100, channels: int = 2):
    from pedalboard.io import AudioFile
    with AudioFile(str(path), "w", rate, channels) as f:
        f.write(np.zeros((channels, frames), np.float32))
    return path


@pytest.fixture
def files(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio\n" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "zero.wav", 0)
    write_wav(tmp_path / "odd.wav", 100, rate=11025)
    write_wav(tmp_path / "silence.wav", 44100 * 4)
    (tmp_path / "adir").mkdir()
    (tmp_path / "binary.toml").write_bytes(bytes(range(256)) * 8)
    return tmp_path


# (arguments after `bounce`, with {t} = the test's folder; exit status; the message)
CASES = [
    ("{t}/text.wav", 2, r"text.wav is not an audio file livediff can read \(.*\); allowed: WAV, FLAC, MP3, OGG or AIFF"),
    ("{t}/empty.wav", 2, r"empty.wav is not an audio file livediff can read"),
    ("{t}/zero.wav", 2, r"zero.wav has 2 channels and 0 frames; allowed: 1..2 channels, at least one frame"),
    ("{t}/missing.wav", 2, r"input file .*missing.wav does not exist"),
    ("{t}/adir", 2, r"input .*adir is not a file; allowed: an audio file"),
    ("{t}/odd.wav", 2, r"odd.wav is at 11025 Hz; supported rates: 22050, 32000, 44100"),
    ("{t}/silence.wav --bpm auto", 2, r"cannot estimate the tempo of .*silence.wav \(too short, or no clear beat\); "
                                      r"give it with --bpm"),
    ("LOOP --bpm 0", 2, r"--bpm 0 is out of range; " + BPM_RANGE),
    ("LOOP --bpm nan", 2, r"--bpm nan is out of range; " + BPM_RANGE),
    ("LOOP --bpm inf", 2, r"--bpm inf is out of range; " + BPM_RANGE),
    ("LOOP --bpm -120", 2, r"--bpm -120 is out of range; " + BPM_RANGE),
    ("LOOP --bpm 400", 2, r"--bpm 400 is out of range; " + BPM_RANGE),
    ("LOOP --bpm 1e-9", 2, r"--bpm 1e-09 is out of range; " + BPM_RANGE),
    ("LOOP --bpm fast", 2, r"argument --bpm: invalid float value: 'fast'"),
    ("LOOP --bars 10000000", 2, r"--bars 10000000 is out of range; allowed: 1 to 9999"),
    ("LOOP --bars 0", 2, r"--bars 0 is out of range; allowed: 1 to 9999"),
    ("LOOP --bars 9999 --bpm 20", 2, r"--bars 9999 at 20 BPM is 2000 min of audio; allowed: at most 30 min \(150 bars"),
    ("LOOP --seed -1", 2, r"--seed -1 is out of range; allowed: 0 to 999"),
    (f"LOOP --seed {2 ** 40}", 2, rf"--seed {2 ** 40} is out of range; allowed: 0 to 999"),
    ("LOOP --style 99", 2, r"--style 99 is not a trained style; allowed: house \(0\), hiphop \(1\), "),
    ("LOOP --style polka", 2, r"--style polka is not a trained style; allowed: house \(0\)"),
    ("LOOP --window-bars 9", 2, r"--window-bars 9 is out of range; allowed: 1 to 4"),
    ("LOOP --mix 101", 2, r"--mix 101 is out of range; allowed: 0 to 100"),
    ("LOOP --variation 101", 2, r"--variation 101 is out of range; allowed: 0 to 100"),
    ("LOOP --sound polka", 2, r"argument --sound: invalid choice: 'polka' \(choose from 'engine', 'ambient', 'drum_and_bass'"),
    ("LOOP --buffer-size 0", 2, r"--buffer-size 0 is out of range; allowed: 32 to 65536 frames"),
    ("LOOP -o {t}/nowhere/out.wav", 2, r"-o .*nowhere/out.wav: directory .*nowhere does not exist; create it first"),
    ("LOOP -o {t}/adir", 2, r"-o .*adir: unsupported file type '\(none\)'; allowed: .wav"),
    ("LOOP -o {t}/adir.wav/", 2, r"-o .*adir.wav is a directory; allowed: a file path"),
    ("LOOP -o LOOP", 2, r"-o .*loop_100bpm.wav is the input file; allowed: another path"),
    ("LOOP --report {t}/r.gif", 2, r"--report .*r.gif: unsupported file type '.gif'; allowed: .png, .json"),
    ("LOOP --preset {t}/binary.toml", 2, r"binary.toml: not a text file \(not UTF-8\); a preset is a TOML text file"),
    ("LOOP --preset polka", 2, r"preset 'polka' is not allowed; allowed: ambient, drum_and_bass, hiphop, house"),
    ("LOOP --endpoint tcp://10.1.2.3:5555", 2, r"is not local; allowed: ipc://<path> or tcp://127.0.0.1:<port>"),
    ("LOOP --sidechain {t}/missing.wav", 2, r"--sidechain .*missing.wav does not exist; allowed: an audio file"),
    ("LOOP --sidechain {t}/adir", 2, r"--sidechain .*adir is not a file; allowed: an audio file"),
    ("LOOP --sidechain LOOP --endpoint ipc:///tmp/x.sock", 2, r"--sidechain needs the engine started by bounce"),
]


def arguments(case: str, folder) -> list[str]:
    args = case.replace("{t}", str(folder)).replace("LOOP", str(LOOP)).split()
    if "-o" not in args:
        args += ["-o", str(folder / "out.wav")]
    if "auto" in args:                  # leave --bpm out: the input's tempo is estimated
        args.remove("--bpm"), args.remove("auto")
    elif "--bpm" not in args:
        args += ["--bpm", "100"]
    if "--bars" not in args:
        args += ["--bars", "2"]
    return ["bounce", *args]


@pytest.mark.parametrize("case, status, message", CASES, ids=[c[0].replace("{t}/", "") for c in CASES])
def test_bounce_refuses_bad_input_before_any_work(files, case, status, message, capsys, monkeypatch):
    (files / "adir.wav").mkdir(exist_ok=True)
    def no_work(*args, **kwargs):
        raise AssertionError("work started (an engine or the plugin) before the arguments were checked")
    monkeypatch.setattr(bridge.bounce.subprocess, "Popen", no_work)
    monkeypatch.setattr(bridge.bounce, "load_plugin", no_work)
    try:
        got = main(arguments(case, files))
    except SystemExit as exit:      # argparse's own errors (a value that is not a number)
        got = exit.code
    err = capsys.readouterr().err
    assert got == status, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    import re
    assert re.search(message, err), err
    assert not (files / "out.wav").exists()


def test_a_missing_plugin_is_one_line_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bridge.bounce, "PLUGIN", tmp_path / "nowhere.vst3")
    assert main(arguments("LOOP --generator loop", tmp_path)) == 1
    err = capsys.readouterr().err
    assert "the plugin is not built (" in err and "run `livediff build-plugin`" in err, err


def test_the_real_command_prints_one_line_and_no_traceback(files):
    result = subprocess.run([sys.executable, "-m", "bridge.cli", *arguments("{t}/text.wav", files)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("livediff bounce: error: ") and len(result.stderr.splitlines()) == 1, result.stderr
