"""End to end with the sao_small generator (a tiny random SAO model exported to ONNX, served with
`livediff serve --model sao-small=DIR`): bounces through the real VST3 in pedalboard at 100 and
140 BPM put every window exactly on the bar lines, and a DAW-style tempo step (CLAP harness,
offline) moves the windows after it onto the tempo map's bar lines at the new tempo."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from bridge.layout import const
from engine.sao.config import parse_config
from engine.sao.export import export
from engine.sao.model import SaoModel
from tests.conftest import REPO
from tests.host.clap_host import ClapHost, Transport
from tests.sao_fixtures import tiny_config
from tests.test_bounce import LOOP, built_plugin, read  # noqa: F401  (built_plugin is a fixture)

SR = 44100


@pytest.fixture(scope="module")
def sao_dir(tmp_path_factory):
    """Graphs only (no checkpoint): what `livediff export-sao` leaves for serving."""
    directory = tmp_path_factory.mktemp("sao-small")
    torch.manual_seed(0)
    cfg = tiny_config()
    (directory / "model_config.json").write_text(json.dumps(cfg))
    export(SaoModel(parse_config(cfg)).eval(), directory / "onnx", directory / "model_config.json")
    return directory


@pytest.mark.parametrize("bpm", [100, 140])
def test_bounce_windows_are_exactly_on_the_bar_lines(built_plugin, private_endpoint, tmp_path, sao_dir, bpm):  # noqa: F811
    bars, bar = 6, SR * 60 * 4 // bpm            # 105840 and 75600 frames: exact at 44.1 kHz
    out_path, log_path = tmp_path / "out.wav", tmp_path / "windows.jsonl"
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "bounce", str(LOOP), "-o", str(out_path),
                             "--bpm", str(bpm), "--bars", str(bars), "--seed", "3", "--generator", "sao_small",
                             "--model", f"sao-small={sao_dir}", "--window-log", str(log_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "LD_ERR_OFFLINE_TIMEOUT" not in result.stderr, result.stderr
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    windows = [w for w in entries if w["instance"] == entries[-1]["instance"]]
    for w in windows:
        assert w["start_sample"] == w["bar_index"] * bar and w["frames"] == bar and w["tempo"] == bpm, w
    generated = {w["bar_index"] for w in windows if w["flags"] == const("LD_WINDOW_GENERATED")}
    assert generated >= set(range(2, bars)) and {w["generator"] for w in windows} == {"sao_small"}
    out, rate = read(out_path)
    assert rate == SR and out.shape == (2, bars * bar)
    rms = np.sqrt((out.reshape(2, bars, bar) ** 2).mean(axis=(0, 2)))
    np.testing.assert_array_equal(out[:, :2 * bar], read(LOOP)[0][:, :2 * bar])   # the preroll: the dry input
    assert (rms[2:] > 0.01).all(), rms


def test_tempo_step_follows_the_tempo_map(engine_factory, sao_dir):
    """Bars 0-3 at 100 BPM, a step to 140 BPM on the bar 4 line, played to bar 9 by a DAW-like
    transport (offline: the shim waits for every window). Each bar's last window sits on the
    tempo map's bar line, as long as its bar at its tempo, made by the model for that tempo (except
    the step's own bar, which was being made when the host reported the step)."""
    rate, block = 48000, 512
    bar100, bar140 = 4 * 60 / 100 * rate, 4 * 60 / 140 * rate
    step = round(4 * bar100)

    def bar_line(bar: int) -> int:
        return round(bar * bar100) if bar <= 4 else step + round((bar - 4) * bar140)

    def transport(pos: int) -> Transport:
        beats = pos * 100 / 60 / rate if pos < step else 16 + (pos - step) * 140 / 60 / rate
        return Transport(tempo=100.0 if pos < step else 140.0, beats=beats, seconds=pos / rate)

    engine = engine_factory("--model", f"sao-small={sao_dir}")
    host = ClapHost(sample_rate=rate, max_frames=block, offline=True)
    try:
        host.set_param("generator", const("LD_GENERATOR_SAO_SMALL"))
        host.set_param("context_bars", 2)
        deadline = time.monotonic() + 20
        while host.stats()["engine_state"] != 1:
            assert time.monotonic() < deadline, "the plugin did not connect to the engine"
            host.process(None, None, frames=block)
            time.sleep(0.005)
        pos, end, out = 0, bar_line(9), []
        t = np.arange(end) / rate
        song = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * t * 100 / 60) > 0)).astype(np.float32)
        while pos < end:
            frames = min(block, end - pos, step - pos if pos < step else block)   # a block ends on the step
            out.append(host.process(np.stack([song[pos:pos + frames]] * 2), transport(pos), frames=frames))
            pos += frames
        assert host.stats()["offline_timeouts"] == 0, "the shim gave up waiting for a window"
    finally:
        host.close()
    entries = [w for w in engine.windows() if w.get("generator") == "sao_small"]
    last = {w["bar_index"]: w for w in entries if w["instance"] == entries[-1]["instance"]}
    assert set(range(2, 9)) <= set(last), sorted(last)
    for bar in range(2, 9):
        w = last[bar]
        assert abs(w["start_sample"] - bar_line(bar)) <= 1, (bar, w["start_sample"], bar_line(bar))
        assert abs(w["start_sample"] + w["frames"] - bar_line(bar + 1)) <= 1, w
        # the step's own bar was being made at 100 BPM when the host reported the step
        if bar != 4:
            assert w["tempo"] == (100.0 if bar < 4 else 140.0) and w["flags"] == const("LD_WINDOW_GENERATED"), w
    played = np.concatenate(out, axis=1)
    after = played[:, bar_line(5):bar_line(8)]
    assert np.sqrt((after ** 2).mean()) > 0.01, "nothing generated after the tempo step"


def test_serve_refuses_bad_model_folders_at_startup(tmp_path, private_endpoint):
    bad = tiny_config()
    bad["model"]["diffusion"]["config"]["patch_size"] = 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model_config.json").write_text(json.dumps(bad))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model_config.json").write_text(json.dumps(tiny_config()))
    cases = [(f"sao-small={tmp_path / 'missing'}", "does not exist"),
             (f"banjo={tmp_path}", "allowed: sao-small=DIR"),
             (f"sao-small={tmp_path / 'bad'}", "model.diffusion.config.patch_size = 2 is not supported"),
             (f"sao-small={tmp_path / 'empty'}", "holds neither model.safetensors nor model.ckpt")]
    for spec, message in cases:
        result = subprocess.run([sys.executable, "-m", "bridge.cli", "serve", "--endpoint", private_endpoint,
                                 "--model", spec], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr, (spec, result.stderr)


def test_status_of_a_generator_slower_than_real_time():
    from bridge.server import slower_than_real_time
    assert slower_than_real_time("sao_small", None, 2.0) is None          # not measured yet
    assert slower_than_real_time("sao_small", 1.5, 2.0) is None
    text = slower_than_real_time("sao_small", 40.0, 2.0)
    assert "0.05x real time" in text and "serves offline bounces" in text
