"""Faults during `livediff bounce` (the real command, the built-in model): an engine killed mid-bounce
makes it exit non-zero naming the bars that lost audio, with no output file; a bounce that is
stopped (Ctrl-C, SIGTERM, even SIGKILL) stops the engine it started."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.bounce import sweep_stale_engine_dirs
from bridge.shm import sweep_stale_segments
from conftest import REPO, read_jsonl, segments_of, start_engine, wait_until

LOOP = REPO / "tests" / "data" / "loop_100bpm.wav"
BARS = 32


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def generated_windows(log: Path) -> list[dict]:
    return [e for e in read_jsonl(log) if e["kind"] == "generate" and e["flags"] & 4]


def start_bounce(tmp_path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "bounce", str(LOOP), "-o", str(tmp_path / "out.wav"),
                             "--bpm", "100", "--bars", str(BARS), "--seed", "3", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A suite started in the background (`make test &`) ignores SIGINT, and
                            # children inherit that: give the bounce the default a terminal gives.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def named_bars(stderr: str) -> set[int]:
    match = re.search(r"in bars ([\d, -]+) of (\d+);", stderr)
    assert match, stderr
    bars = set()
    for part in match.group(1).split(", "):
        low, _, high = part.partition("-")
        bars |= set(range(int(low), int(high or low) + 1))
    return bars


def test_an_engine_killed_mid_bounce_fails_the_bounce_naming_the_bars(tmp_path):
    log = tmp_path / "windows.jsonl"
    bounce = start_bounce(tmp_path, "--window-log", str(log))
    assert wait_until(lambda: len(generated_windows(log)) >= 3, timeout=120), "no windows were generated"
    engine = children(bounce.pid)[0]
    os.kill(engine, signal.SIGKILL)
    _, stderr = bounce.communicate(timeout=120)
    assert bounce.returncode == 1, stderr
    assert "the engine exited (status -9) during the bounce" in stderr and "was not written" in stderr, stderr
    made = {w["bar_index"] + 1 for w in generated_windows(log)}     # 1-based, as the message counts
    lost = named_bars(stderr)
    assert lost and max(lost) == BARS and min(lost) > 2, stderr         # bars 1-2 are preroll, then windows were made
    assert set(range(1, BARS + 1)) - made - {1, 2} <= lost, "a bar without generated audio is not named"
    assert not list(tmp_path.glob("out*.wav")), "a file that looks complete was left"
    assert segments_of(engine) == [], "the killed engine's segments are left in /dev/shm"


def test_someone_elses_engine_killed_mid_bounce_is_caught_by_the_plugin(private_endpoint, tmp_path):
    engine = start_engine(private_endpoint, tmp_path)
    try:
        bounce = start_bounce(tmp_path, "--endpoint", engine.endpoint)
        assert wait_until(lambda: len(generated_windows(engine.window_log)) >= 3, timeout=120)
    finally:
        engine.process.kill()
        engine.process.wait()
        sweep_stale_segments()      # a SIGKILLed engine cannot remove its own
    _, stderr = bounce.communicate(timeout=120)
    assert bounce.returncode == 1, stderr
    lost = named_bars(stderr)
    assert max(lost) == BARS and min(lost) > 2 and "block(s) played without their generated audio" in stderr, stderr
    assert not list(tmp_path.glob("out*.wav"))


@pytest.mark.parametrize("how, status", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM),
                                         (signal.SIGKILL, -signal.SIGKILL)])
def test_whatever_stops_a_bounce_stops_its_engine(tmp_path, how, status):
    log = tmp_path / "windows.jsonl"
    bounce = start_bounce(tmp_path, "--window-log", str(log))
    assert wait_until(lambda: len(generated_windows(log)) >= 1, timeout=120)
    engine = children(bounce.pid)[0]
    endpoint = Path(Path(f"/proc/{engine}/cmdline").read_text().split("\0")[5][len("ipc://"):])
    bounce.send_signal(how)
    _, stderr = bounce.communicate(timeout=60)
    assert bounce.returncode == status, stderr
    assert wait_until(lambda: not alive(engine), timeout=10), "the bounce's engine is still running"
    assert "Traceback" not in stderr, stderr
    assert not (tmp_path / "out.wav").exists()
    if how != signal.SIGKILL:
        assert "was not written" in stderr, stderr
        assert not endpoint.parent.exists(), "the bounce left its endpoint directory"
    else:   # nothing could clean up after a SIGKILL: the next bounce sweeps the directory
        assert endpoint.parent.exists() and not endpoint.exists(), "the engine left its socket"
        os.utime(endpoint.parent, (time.time() - 3600, time.time() - 3600))   # as if it had been there an hour
        assert endpoint.parent in sweep_stale_engine_dirs()
