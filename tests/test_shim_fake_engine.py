"""The shim against a lying engine (tests/host/fake_engine.py, one child process per case):
whatever the WELCOME names or the segment holds, the host never crashes, no host call takes
over 100 ms, and every output sample is finite and within +-4.0."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
import sys

import pytest

from tests.conftest import REPO
from tests.host.build import built_plugin
from tests.host.fake_engine import CASES

# case -> (plays the fake engine's audio, words the shim's log must contain)
EXPECTED = {
    "healthy": (True, "engine connected"),
    "wrapped-offset": (False, "outside the"),
    "huge-slot-start": (True, "engine connected"),
    "truncated": (None, "segment shrank under its mapping"),
    "truncated-before": (False, "outside the 8192-byte segment"),
    "fifo": (False, "is not a regular file"),
    "foreign-segment": (False, "belongs to another user"),
    "non-finite": (True, "engine connected"),
    "foreign-directory": (False, "belongs to another user (uid 65534"),
    "reply-flood": (True, "engine connected"),
}
BLOCKS = 300


def test_every_case_has_an_expectation():
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_lying_engine_cannot_crash_hang_or_poison_the_host(case):
    if case in ("foreign-directory", "foreign-segment") and os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    plugin = str(built_plugin()["CLAP"])
    segments = set(Path("/dev/shm").glob("livediff-*"))
    result = subprocess.run([sys.executable, "-m", "tests.host.fake_engine", case, "--plugin", plugin,
                             "--blocks", str(BLOCKS)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"the host died ({result.returncode}):\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    assert set(Path("/dev/shm").glob("livediff-*")) <= segments, "the case left a segment (or its FIFO) behind"
    for call in ("longest_process_s", "activate_s", "deactivate_s"):
        assert report[call] < 0.1, report
    assert report["finite"] and report["peak"] <= 4.0, report
    plays, words = EXPECTED[case]
    assert words in result.stderr, result.stderr
    if plays:
        assert report["generated_blocks"] > 0.9 * BLOCKS and report["engine_state"] == 1, report
    elif plays is False:
        assert report["generated_blocks"] == 0 and report["engine_state"] == 2, report
    else:   # truncated half-way: it played, then went silent instead of raising SIGBUS
        assert 0.3 * BLOCKS < report["generated_blocks"] < 0.6 * BLOCKS, report
    if case == "non-finite":
        assert report["peak"] == 4.0, "3e38 and Inf come out clamped to +-4.0"
    if case == "foreign-directory":
        assert report["engine_hellos"] == 0, "the shim must not talk to an engine in another user's directory"
