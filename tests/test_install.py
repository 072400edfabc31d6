"""`pip install .` (not editable), used from outside the checkout: the header, the shim's sources,
presets and weights come as package data, `livediff build-plugin` builds where the package is not,
`livediff doctor` is healthy and a bounce works.

The fresh venv gets livediff itself from a wheel of (a copy of) this checkout; its dependencies (numpy,
pedalboard, onnxruntime, ...) come from the test's own environment through a .pth file, so the
test does not download hundreds of MB. What it checks is the package, not pip's resolver."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
LOOP = REPO / "tests" / "data" / "loop_100bpm.wav"


def run(command: list[str], env: dict, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_an_installed_livediff_works_outside_the_checkout(tmp_path):
    source = tmp_path / "src"       # tracked files only: no build/, .venv/ or egg-info leak in
    for name in subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "livediff_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(home), "LANG": "C.UTF-8"}
    # `pip install .` = build a wheel, install it; built here (the fresh venv's setuptools has no
    # bdist_wheel and a build-isolated one would be downloaded)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(source)], dict(os.environ), tmp_path)
    wheel = next((tmp_path / "dist").glob("livediff-*.whl"))
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], env, tmp_path)
    shutil.rmtree(source)           # nothing may read the checkout it came from

    where = run([str(venv / "bin" / "python"), "-c", "import bridge, engine; print(bridge.__file__, engine.__file__)"],
                env, tmp_path).stdout
    assert str(site) in where and str(REPO) not in where, where
    assert run(["livediff", "--version"], env, tmp_path).stdout.strip() == "livediff 0.1.0"
    built = run(["livediff", "build-plugin"], env, tmp_path).stdout
    assert str(home / ".local" / "share" / "livediff" / "build" / "livediff.vst3") in built, built

    doctor = run(["livediff", "doctor"], env, tmp_path).stdout
    assert "FAIL" not in doctor and "all good" in doctor, doctor
    assert "built-in model (onnx) runs one bar" in doctor and "6 presets load" in doctor, doctor

    bounce = run(["livediff", "bounce", str(LOOP), "-o", str(tmp_path / "out.wav"), "--bpm", "100", "--bars", "4",
                  "--preset", "house", "--generator", "loop", "--report", str(tmp_path / "out.json")], env, tmp_path)
    assert "bounced 4 bars" in bounce.stdout and (tmp_path / "out.wav").stat().st_size > 4 * 105840 * 8
    assert run(["livediff", "styles"], env, tmp_path).stdout.count("\n") == 6
