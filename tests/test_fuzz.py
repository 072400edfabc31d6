"""Short fuzz runs (issue #9): atheris on the engine's whole path (tests/fuzz/fuzz_engine.py)
and libFuzzer with clang, ASan and UBSan on the shim's reply decoding, segment validation,
state loading and clock (tests/fuzz/*.c). Each target first replays every input it ever
crashed on (tests/fuzz/regressions/<target>/), then fuzzes for a few seconds from its seeds.
scripts/fuzz_long.sh runs a million inputs and more; docs/reliability.md has the counts."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fuzz import seeds

FUZZ = REPO / "tests" / "fuzz"
C_TARGETS = ["fuzz_reply", "fuzz_segment", "fuzz_state", "fuzz_clock"]
SECONDS = 3


def regressions(target: str) -> list[Path]:
    folder = FUZZ / "regressions" / target
    return sorted(folder.iterdir()) if folder.is_dir() else []


def fuzz(command: list[str], target: str, tmp_path: Path, seconds: int, max_len: int = 8192) -> str:
    """Replay the target's regression inputs, then fuzz from its seeds; returns the output."""
    inputs = regressions(target)
    if inputs:
        replay = subprocess.run([*command, *map(str, inputs)], capture_output=True, text=True, errors="replace", timeout=120)
        assert replay.returncode == 0, f"a regression input crashes {target} again:\n{replay.stderr[-4000:]}"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run([*command, f"-max_total_time={seconds}", "-timeout=20", f"-max_len={max_len}",
                             f"-artifact_prefix={tmp_path}/", str(corpus), str(seeds.write(tmp_path / "seeds", target))],
                            capture_output=True, text=True, errors="replace", timeout=seconds + 120)
    assert result.returncode == 0, f"{target} found a crash (input in {tmp_path}):\n{result.stderr[-4000:]}"
    assert "Done" in result.stderr, result.stderr[-2000:]
    return result.stderr


@pytest.fixture(scope="module")
def c_fuzzers(tmp_path_factory) -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (apt install clang libclang-rt-14-dev): the C fuzzers do not run")
    build = tmp_path_factory.mktemp("fuzz")
    result = subprocess.run(["make", "-C", str(FUZZ), f"BUILD={build}"], capture_output=True, text=True)
    if result.returncode != 0 and "libclang_rt.fuzzer" in result.stderr:
        pytest.skip("clang has no libFuzzer runtime (apt install libclang-rt-14-dev)")
    assert result.returncode == 0, result.stderr
    return build


@pytest.mark.parametrize("target", C_TARGETS)
def test_shim_fuzz_target(c_fuzzers, target, tmp_path):
    fuzz([str(c_fuzzers / target)], target, tmp_path, SECONDS)


def test_engine_fuzz_target(tmp_path):
    pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris): the engine fuzzer does not run")
    output = fuzz([sys.executable, str(FUZZ / "fuzz_engine.py")], "engine", tmp_path, 2 * SECONDS, max_len=1024)
    assert "INITED" in output, "the seeds were loaded"
