"""The engine's lifecycle in a DAW: engines started at the same moment leave exactly one (the
endpoint's lock file), a plugin that finds no engine starts one from its I/O thread (twenty
instances at once start exactly one), an engine started that way exits when idle, and
`livediff install-plugin` puts the bundles where hosts look."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.client import engine_answers
from bridge.endpoint import ipc_path
from conftest import REPO, wait_until
from tests.host.build import built_plugin
from tests.host.clap_host import ClapHost, Transport


def engines_serving(endpoint: str) -> list[int]:
    """Pids of `livediff serve` processes for this endpoint (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"serve" in argv and endpoint.encode() in argv:
            pids.append(int(entry.name))
    return pids


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists() or
                      Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 15), f"engine {pid} did not stop"


def test_engines_started_together_leave_exactly_one(private_endpoint, tmp_path):
    command = [sys.executable, "-m", "bridge.cli", "serve", "--endpoint", private_endpoint]
    engines = [subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        assert wait_until(lambda: sum(e.poll() is not None for e in engines) == 2, 60), "two must give up"
        survivor = next(e for e in engines if e.poll() is None)
        assert wait_until(lambda: engine_answers(private_endpoint, 0.2), 20)
        for loser in (e for e in engines if e is not survivor):
            assert loser.returncode == 2
            assert "already serves or is starting" in loser.stderr.read()
        socket = ipc_path(private_endpoint)
        assert socket.exists(), "a loser deleted the winner's socket"
        lock = socket.with_name(socket.name + ".lock")
        assert lock.read_text().strip() == str(survivor.pid)
        assert oct(lock.stat().st_mode & 0o777) == "0o600"
    finally:
        for engine in engines:
            if engine.poll() is None:
                engine.send_signal(signal.SIGTERM)
                engine.wait(15)
    assert survivor.returncode == 0
    assert not socket.exists()


def test_an_idle_engine_exits_when_asked(private_endpoint):
    engine = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--endpoint", private_endpoint,
                               "--idle-exit", "1"], cwd=REPO)
    try:
        assert wait_until(lambda: engine_answers(private_endpoint, 0.2), 20)
        assert engine.wait(10) == 0
    finally:
        if engine.poll() is None:
            engine.kill()
    assert not ipc_path(private_endpoint).exists()


def test_twenty_instances_created_at_once_start_exactly_one_engine(private_endpoint, monkeypatch):
    """With no engine running and auto-launch on, every instance finds nobody; one starts the
    engine (the command baked in by `livediff build-plugin`: this checkout's livediff), the others
    wait for it, and all connect to it."""
    monkeypatch.setenv("LIVEDIFF_AUTO_LAUNCH", "1")
    monkeypatch.delenv("LIVEDIFF_ENGINE_COMMAND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(Path(private_endpoint[len("ipc://"):]).parent / "config"))
    hosts = [ClapHost(sample_rate=48000, max_frames=512) for _ in range(20)]
    try:
        deadline = time.monotonic() + 90
        transport = Transport(playing=True, tempo=120.0)
        while not all(h.stats()["engine_state"] == 1 for h in hosts):
            assert time.monotonic() < deadline, [h.stats() for h in hosts]
            for host in hosts:
                host.process(np.zeros((2, 512), np.float32), transport)
            transport = transport.advanced(512, 48000)
            time.sleep(0.01)
        assert sum(h.stats()["engine_launched"] for h in hosts) == 1
        pids = engines_serving(private_endpoint)
        assert len(pids) == 1, pids
        log = ipc_path(private_endpoint).with_name("engine.log")
        assert "serving on" in log.read_text()
    finally:
        for host in hosts:
            host.close()
    stop(pids[0])


def test_auto_launch_can_be_turned_off_in_the_config_file(private_endpoint, monkeypatch, tmp_path, capfd):
    monkeypatch.delenv("LIVEDIFF_AUTO_LAUNCH")
    (tmp_path / "livediff").mkdir()
    (tmp_path / "livediff" / "plugin.conf").write_text("# no engine from the plugin\nauto_launch = no\nbanana = 1\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with ClapHost(sample_rate=48000) as host:
        assert wait_until(lambda: host.stats()["engine_state"] == 2, 10)
        assert host.stats()["engine_launched"] == 0
    assert engines_serving(private_endpoint) == []
    assert "plugin.conf line 3 ignored" in capfd.readouterr().err


def test_a_command_that_fails_is_reported_and_the_plugin_plays_on(private_endpoint, monkeypatch, capfd):
    monkeypatch.setenv("LIVEDIFF_AUTO_LAUNCH", "1")
    monkeypatch.setenv("LIVEDIFF_ENGINE_COMMAND", "/nonexistent/livediff")
    with ClapHost(sample_rate=48000) as host:
        assert wait_until(lambda: host.stats()["engine_launched"] == 1, 10)
        out = host.process(np.ones((2, 64), np.float32), Transport(playing=True))
        assert np.all(np.isfinite(out))
    log = ipc_path(private_endpoint).with_name("engine.log")
    assert wait_until(lambda: log.exists() and "/nonexistent/livediff" in log.read_text(), 5)


def test_install_plugin_copies_both_formats_where_hosts_look(tmp_path, monkeypatch):
    from bridge.cli import main
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["install-plugin"]) == 0
    built = built_plugin()
    library = tmp_path / "home" / ".vst3" / "livediff.vst3" / "Contents" / "x86_64-linux" / "livediff.so"
    assert library.read_bytes() == (built["VST3"] / "Contents" / "x86_64-linux" / "livediff.so").read_bytes()
    assert (tmp_path / "home" / ".clap" / "livediff.clap").read_bytes() == built["CLAP"].read_bytes()
    assert main(["install-plugin", "--prefix", str(tmp_path / "usr")]) == 0
    assert (tmp_path / "usr" / "vst3" / "livediff.vst3" / "Contents" / "x86_64-linux" / "livediff.so").is_file()
    assert (tmp_path / "usr" / "clap" / "livediff.clap").is_file()
    assert main(["install-plugin"]) == 0, "installing again replaces the copies"
