"""A lying engine and a host: the shim (build/livediff.clap) against an engine that answers
HELLO with a segment crafted to break it (issue #9, "Shim" findings).

    python -m tests.host.fake_engine CASE [--plugin PATH] [--blocks N]

Runs as a child of tests/test_shim_fake_engine.py so a crash of the shim (SIGSEGV, SIGBUS)
or a hang kills only this process; the fake engine runs in a process of its own (so its
Python work never holds this process's GIL while a process() call is timed). Prints one JSON
line: the longest process() call and the longest activation and deactivation, whether every
output sample was finite and how large, the shim's stats, and what the fake engine heard.
CASES lists what each case does.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
import time

import msgpack
import numpy as np
import zmq

from bridge import protocol
from bridge.shm import SHM_DIR, TimelineStore
from engine.publisher import WindowKind
from tests.host.clap_host import ClapHost, Transport

RATE, BLOCK = 48000, 512
NOBODY = 65534

CASES = {
    "healthy": "a correct segment with a tone (the control: the shim must play it)",
    "wrapped-offset": "audio_offset near 2^64: offset + size wraps past the bounds check",
    "huge-slot-start": "slots that start near INT64_MAX: start + frames overflows",
    "truncated": "the segment is truncated to its header after the shim mapped it",
    "truncated-before": "the WELCOME names a segment already shorter than its header says",
    "fifo": "the WELCOME names a FIFO, not a shared-memory file",
    "foreign-segment": "the segment belongs to another user",
    "non-finite": "slots hold NaN, +-Inf and 3e38",
    "foreign-directory": "the endpoint's ipc directory belongs to another user (root only)",
    "reply-flood": "the engine sends STATUS messages as fast as it can, without end",
}


class FakeEngine:
    """A ROUTER that welcomes every HELLO with a segment shaped by the case."""

    def __init__(self, endpoint: str, case: str, mapped):
        self.case = case
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 0)
        self.socket.bind(endpoint)
        self.store: TimelineStore | None = None
        self.extra_paths: list = []
        self.hellos = 0
        self.epoch = None
        self.mapped = mapped                  # set once the shim got its WELCOME
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _segment_name(self) -> str:
        if self.case == "fifo":
            path = fifo_path(os.getpid())
            os.mkfifo(path, 0o600)
            self.extra_paths.append(path)
            return "/" + path.name
        if self.store is not None:          # a repeated HELLO (the shim gave up on the last segment)
            self._release_store()
        self.store = TimelineStore(0xFA4E0000 + os.getpid(), 2, RATE)
        self.epoch = None
        h = self.store._header
        if self.case == "wrapped-offset":
            h.audio_offset = (1 << 64) - 4096
        elif self.case == "truncated-before":
            os.truncate(self.store.path, 8192)
        elif self.case == "foreign-segment":
            os.chown(self.store.path, NOBODY, NOBODY)
        return self.store.name

    def _publish(self, epoch: int, grid: int) -> None:
        """Slots of `epoch` (made for the shim's grid sequence `grid`) covering the first 4 s: a
        tone, or the case's poison."""
        t = np.arange(RATE) / RATE
        audio = np.tile(0.25 * np.sin(2 * np.pi * 440 * t), (2, 1)).astype(np.float32)
        if self.case == "non-finite":
            audio[:, 0::4], audio[:, 1::4], audio[:, 2::4], audio[:, 3::4] = np.nan, np.inf, -np.inf, 3e38
        for second in range(4):
            self.store.publish(epoch=epoch, start_sample=second * RATE, bar_index=second, start_beat=2.0 * second,
                               tempo_bpm=120.0, kind=WindowKind.GENERATED, grid=grid, audio=audio)
        if self.case == "huge-slot-start":   # besides the tone: a slot whose end overflows int64
            self.store.publish(epoch=epoch, start_sample=(1 << 63) - 100, bar_index=9, start_beat=0.0,
                               tempo_bpm=120.0, kind=WindowKind.GENERATED, grid=grid, audio=audio)

    def _serve(self) -> None:
        last_status = 0.0
        while not self.stop.is_set():
            if self.socket.poll(5):
                identity, frame = self.socket.recv_multipart()
                message = msgpack.unpackb(frame, strict_map_key=False)
                kind = message.get(protocol.KEY["type"])
                if kind == protocol.MSG["hello"]:
                    self.hellos += 1
                    self.identity = identity
                    self.socket.send_multipart([identity, protocol.welcome(self._segment_name(), 0, "loop")])
                    self.mapped.set()
                elif kind == protocol.MSG["transport"] and self.epoch is None and self.store is not None:
                    self.epoch = message[protocol.KEY["epoch"]]
                    self._publish(self.epoch, message[protocol.KEY["grid"]])
            flood = self.case == "reply-flood"
            if self.hellos and (flood or time.monotonic() - last_status > 0.2):   # heartbeats keep the session
                last_status = time.monotonic()
                for _ in range(2000 if flood else 1):
                    self.socket.send_multipart([self.identity, protocol.status(0, "ok", 0, 0, "loop", "main")])

    def _release_store(self) -> None:
        if self.case == "foreign-segment":
            os.chown(self.store.path, os.getuid(), os.getgid())
        self.store.close()

    def truncate(self) -> None:
        os.truncate(self.store.path, 4096)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.socket.close(0)
        self.context.term()
        if self.store is not None:
            self._release_store()
        for path in self.extra_paths:
            path.unlink(missing_ok=True)


def fifo_path(pid: int):
    """The FIFO the "fifo" case names as its segment (the engine process's pid in it)."""
    return SHM_DIR / f"livediff-fifo-{pid}"


def _engine_process(endpoint: str, case: str, mapped, commands, replies) -> None:
    """[fake engine process] Serve until told "stop"; "truncate" shrinks the segment."""
    engine = FakeEngine(endpoint, case, mapped)
    try:
        while (command := commands.get()) != "stop":
            if command == "truncate":
                engine.truncate()
            replies.put(command)
    finally:
        engine.close()
        replies.put(engine.hellos)


def run(case: str, plugin: str | None, blocks: int) -> dict:
    directory = tempfile.mkdtemp(prefix="ld-fake-", dir="/tmp")
    endpoint = f"ipc://{directory}/engine.sock"
    os.environ["LIVEDIFF_ENDPOINT"] = endpoint
    # A realtime host that does not pace its blocks: do not take it for a render (docs/hosts.md).
    os.environ["LIVEDIFF_RENDER_FALLBACK"] = "off"
    spawn = multiprocessing.get_context("spawn")
    mapped, commands, replies = spawn.Event(), spawn.Queue(), spawn.Queue()
    engine = spawn.Process(target=_engine_process, args=(endpoint, case, mapped, commands, replies))
    engine.start()
    while not os.path.exists(endpoint[len("ipc://"):]):
        time.sleep(0.01)
    if case == "foreign-directory":
        os.chown(directory, NOBODY, NOBODY)
    longest = peak = 0.0
    finite = True
    generated = 0
    try:
        host = ClapHost(path=plugin, sample_rate=RATE, max_frames=BLOCK)
        host.set_param("preroll", 1)    # LD_PREROLL_SILENCE: sound in the output is the fake engine's audio
        mapped.wait(3.0)
        transport = Transport(playing=True, tempo=120.0)
        t = np.arange(BLOCK) / RATE
        dry = np.tile(0.1 * np.sin(2 * np.pi * 110 * t), (2, 1)).astype(np.float32)
        for n in range(blocks):
            if case == "truncated" and n == blocks // 2:
                commands.put("truncate")
                replies.get(timeout=10)
                time.sleep(0.05)      # the I/O thread checks the size every millisecond
            called = time.perf_counter()
            out = host.process(dry, transport)
            longest = max(longest, time.perf_counter() - called)
            finite &= bool(np.isfinite(out).all())
            peak = max(peak, float(np.abs(out).max()))
            generated += bool(np.abs(out).max() > 1e-3)
            transport = transport.advanced(BLOCK, RATE)
            time.sleep(0.002)
        stats = host.stats()
        started = time.perf_counter()           # the host's main thread: deactivate, activate again
        host.plugin.stop_processing(host.plugin)
        host.plugin.deactivate(host.plugin)
        deactivate_s = time.perf_counter() - started
        started = time.perf_counter()
        host.plugin.activate(host.plugin, RATE, 1, BLOCK)
        host.plugin.start_processing(host.plugin)
        activate_s = time.perf_counter() - started
        host.close()
    finally:
        commands.put("stop")
        try:
            hellos = replies.get(timeout=10)
        finally:
            engine.join(10)
            if engine.is_alive():
                engine.kill()
                engine.join(10)
            fifo_path(engine.pid).unlink(missing_ok=True)   # a killed engine process could not remove it
            shutil.rmtree(directory, ignore_errors=True)
    return {"case": case, "longest_process_s": round(longest, 5), "activate_s": round(activate_s, 4),
            "deactivate_s": round(deactivate_s, 4), "finite": finite, "peak": peak, "generated_blocks": generated,
            "blocks": blocks, "engine_hellos": hellos, **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--plugin", help="a .clap file (default: build/livediff.clap)")
    parser.add_argument("--blocks", type=int, default=400)
    args = parser.parse_args()
    print(json.dumps(run(args.case, args.plugin, args.blocks)), flush=True)


if __name__ == "__main__":
    main()
