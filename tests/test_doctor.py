"""`livediff doctor` on a healthy setup says so; on a broken one each problem is a FAIL line with
its fix, and the exit status says something must be fixed."""
from __future__ import annotations

import os
import shutil

import pytest

from bridge import doctor
from bridge.build import BUILD_DIR, outputs
from bridge.cli import main


@pytest.fixture
def installed_home(tmp_path):
    """A home where the built plugins are installed where hosts look."""
    built = outputs(BUILD_DIR)
    (tmp_path / ".vst3").mkdir()
    (tmp_path / ".clap").mkdir()
    shutil.copytree(built["VST3"].parents[2], tmp_path / ".vst3" / "livediff.vst3")
    shutil.copy2(built["CLAP"], tmp_path / ".clap" / "livediff.clap")
    return tmp_path


def test_a_healthy_setup(engine, installed_home):
    checks = doctor.run_checks(endpoint=engine.endpoint, home=installed_home)
    assert [c for c in checks if c.status != doctor.OK] == [], "\n".join(c.line() for c in checks)
    text = "\n".join(c.what for c in checks)
    for expected in ("libzmq and msgpack-c are installed", "plugin built:", "VST3 plugin installed:",
                     "CLAP plugin installed:", "is yours, mode 700", f"an engine answers on {engine.endpoint}",
                     "ONNX Runtime", "CPUExecutionProvider", "torch 2.13.0", "built-in model (onnx) runs one bar in",
                     "x real time on this machine", "6 presets load"):
        assert expected in text, text


def test_a_broken_setup_names_each_problem_and_its_fix(tmp_path, monkeypatch, capsys):
    endpoint_dir = tmp_path / "endpoint"
    endpoint_dir.mkdir()
    os.chmod(endpoint_dir, 0o755)
    monkeypatch.setenv("LIVEDIFF_ENDPOINT", f"ipc://{endpoint_dir}/engine.sock")
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: None if name == "msgpackc" else "lib.so")
    monkeypatch.setattr(doctor.build, "BUILD_DIR", tmp_path / "no-build")
    monkeypatch.setenv("HOME", str(tmp_path))
    import engine.diffusion
    monkeypatch.setattr(engine.diffusion, "WEIGHTS_DIR", tmp_path / "no-weights")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "config" / "livediff" / "presets").mkdir(parents=True)
    (tmp_path / "config" / "livediff" / "presets" / "mine.toml").write_text('style = "polka"\n')
    import bridge.presets
    monkeypatch.setattr(bridge.presets, "SOUND_NAMES", bridge.presets.SOUND_NAMES[:-1])   # a shipped preset gone

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    expected = [
        ("FAIL  missing to build or run the plugin: libmsgpackc.so", "fix: sudo apt-get install libzmq3-dev libmsgpack-dev"),
        ("FAIL  plugin not built: missing VST3", "fix: livediff build-plugin"),
        ("warn  VST3 plugin not installed where hosts look", "fix: "),
        (f"FAIL  endpoint directory {endpoint_dir} has mode 755", f"fix: chmod 700 {endpoint_dir}"),
        ("warn  no engine answers on", "fix: livediff serve"),
        ("FAIL  the built-in model does not load or run: ", "fix: reinstall livediff"),
        ("FAIL  preset: ", "mine.toml: style = 'polka' is not allowed"),
        ("FAIL  5 shipped presets but the plugin's `sound` parameter names 6", "fix: reinstall livediff"),
    ]
    lines = out.splitlines()
    for problem, fix in expected:
        at = next((i for i, line in enumerate(lines) if line.startswith(problem)), None)
        assert at is not None, f"no line {problem!r} in:\n{out}"
        assert fix in lines[at] or fix in lines[at + 1], f"{problem!r} without {fix!r}:\n{out}"
    assert out.strip().endswith("problem(s) to fix")


def test_a_stale_build_and_an_old_installed_copy(installed_home, tmp_path):
    build_dir = tmp_path / "build"
    shutil.copytree(BUILD_DIR / "livediff.vst3", build_dir / "livediff.vst3")
    shutil.copy2(BUILD_DIR / "livediff.clap", build_dir / "livediff.clap")
    for path in outputs(build_dir).values():
        os.utime(path, (1, 1))      # older than every source file
    assert doctor.check_build(build_dir).status == doctor.FAIL
    (installed_home / ".clap" / "livediff.clap").write_bytes(b"an old build")
    clap = [c for c in doctor.check_installed(BUILD_DIR, installed_home) if "CLAP" in c.what][0]
    assert clap.status == doctor.WARN and "differs from the build" in clap.what
