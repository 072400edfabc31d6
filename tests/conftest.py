"""Shared fixtures: a private endpoint and a real `livediff serve` process on it, stopped and
checked for leftovers (segments in /dev/shm, the ipc socket file) afterwards."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.client import engine_answers
from bridge.shm import SHM_DIR

REPO = Path(__file__).resolve().parent.parent


def segments_of(pid: int) -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(f"livediff-{pid}-*"))


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines log another process may still be appending to
    (a line is complete once its newline is written)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


@dataclass
class EngineProcess:
    endpoint: str
    window_log: Path
    process: subprocess.Popen

    def windows(self) -> list[dict]:
        return read_jsonl(self.window_log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(autouse=True)
def no_auto_launch(monkeypatch):
    """Plugins loaded by tests never start an engine of their own, unless a test asks for it."""
    monkeypatch.setenv("LIVEDIFF_AUTO_LAUNCH", "0")


@pytest.fixture
def private_endpoint(monkeypatch):
    """An ipc endpoint in a fresh 0700 directory (short path: ipc paths are limited to ~107 bytes),
    also exported as $LIVEDIFF_ENDPOINT so plugins loaded by the test use it."""
    directory = tempfile.mkdtemp(prefix="ld-", dir="/tmp")
    endpoint = f"ipc://{directory}/engine.sock"
    monkeypatch.setenv("LIVEDIFF_ENDPOINT", endpoint)
    yield endpoint
    shutil.rmtree(directory, ignore_errors=True)


def start_engine(endpoint: str, log_dir: Path, *extra: str, stderr=None) -> EngineProcess:
    window_log = log_dir / "windows.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--endpoint", endpoint,
                                "--window-log", str(window_log), *extra], cwd=REPO, stderr=stderr)
    deadline = time.monotonic() + 20
    while not engine_answers(endpoint, 0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"engine did not start on {endpoint} (exit {process.poll()})")
    return EngineProcess(endpoint, window_log, process)


@pytest.fixture
def engine_factory(private_endpoint, tmp_path):
    """start(*extra_args) -> EngineProcess; every engine started is stopped and checked."""
    started: list[EngineProcess] = []

    def start(*extra: str) -> EngineProcess:
        started.append(start_engine(private_endpoint, tmp_path, *extra))
        return started[-1]

    yield start
    for engine in started:
        assert engine.stop() == 0, "the engine did not exit cleanly on SIGTERM"
        assert segments_of(engine.process.pid) == [], "the engine left segments in /dev/shm"
    assert not Path(private_endpoint[len("ipc://"):]).exists(), "the engine left its ipc socket file"


@pytest.fixture
def engine(engine_factory) -> EngineProcess:
    return engine_factory()


def closing_factory(cls):
    """Fixture body: `make(**kwargs)` builds cls(**kwargs); every one is closed after the test."""
    made = []

    def make(**kwargs):
        made.append(cls(**kwargs))
        return made[-1]

    yield make
    for thing in made:
        thing.close()


def wait_until(condition, timeout=5.0):
    """Poll `condition` every 5 ms; True once it holds, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False
